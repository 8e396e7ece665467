import sys

from nostr_imagegen.cli import main

sys.exit(main())
