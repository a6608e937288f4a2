"""Driver that runs CRIU's zdtm "static" test programs through `ssi dump`/`ssi restore` and
through CRIU, and compares the outcomes (see docs/CHECKPOINT.md and scripts/zdtm.py)."""
