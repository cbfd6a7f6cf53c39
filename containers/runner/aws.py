# Entry point of the tree's `aws` (see the launcher, usr/bin/aws). -I leaves this directory off
# sys.path, and it must come first: its botocore (the CLI's pin) shadows the runner's.
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from awscli.clidriver import main  # noqa: E402  (needs the path above)

if __name__ == "__main__":
    sys.exit(main())
