"""Seismic data: grids, SEG-Y and .npy volumes, picks and well logs, the synthetic survey and its
attributes, the Kuwahara filter and the ingest step. Everything ``ingest@seismic`` and
``validate@seismic`` depend on lives here."""
