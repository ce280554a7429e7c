"""Operating a cycle: the run lock, status, the run report, purge, scratch, profiles, the
`ensflow` command. They read what jobs wrote (records, receipts), never log text."""
