"""``python -m npnet`` moved: the command lines live in the composition root ``cli`` (see README)."""

import sys

sys.exit(
    "the NPNet Studio command line moved to `python -m cli` (generate, collect, train, convert, "
    "import-official, micro, micro-npnet); e.g. `python -m cli generate --model micro --prompt 'a red circle' --out runs/demo`"
)
