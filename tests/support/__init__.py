"""What the test modules share, one module per job (imported as ``support.<module>``: tests/ is on sys.path)."""
