"""`python -m seqtrain` runs the same CLI as the `seqtrain` console script."""

from seqtrain_cli.main import main

main()
