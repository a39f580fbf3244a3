"""Trackbed data: the TFRecord contract, readers/writers, image folders, the embedded default set
and the ingest step. Everything ``ingest@trackbed`` and ``validate@trackbed`` depend on lives here."""
