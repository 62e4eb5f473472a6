import sys

from onnxrt.cli import main

sys.exit(main())
