"""Loading models: files, bytes, ModelProto; external data; version checks."""
