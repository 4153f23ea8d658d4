"""Where sealed files live: the archive directory's layout and every fsync / no-overwrite publish."""
