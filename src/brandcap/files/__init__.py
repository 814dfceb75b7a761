"""Files on disk: atomic writes and the readers of what they write (atomic), append-only logs (append_only),
the one out-of-space message (disk_full), stored images (images), the records stages hand each other
(stage_records), the product table's schema and how paths are written in artifacts (product_table), and
every digest the project takes of bytes, JSON and folders (digests)."""
