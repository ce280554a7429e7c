"""One module per workflow stage; a rule's script calls exactly one of them. Stages use
adapters and science, never each other."""
