"""The seqtrain command line (installed as `seqtrain_cli`)."""
