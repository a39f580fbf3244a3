"""MLflow models that serve: one ``mlflow.pyfunc.PythonModel`` per family, loggable and registrable.

A client needs only MLflow (``mlflow.pyfunc.load_model`` or ``mlflow models serve``): each model
carries a signature, an input example, explicit pip requirements and this package as code
(``code_paths``), so our internals are never the client's business.

- :mod:`.trackbed` — images (encoded bytes in an ``image`` column; base64 over REST) → class name,
  confidence and one probability column per class.
- :mod:`.seismic` — a table of named attribute columns (checked by name) → facies name and
  probabilities (forest or GTM export).
- :mod:`.engraving` — a quantized score (MusicXML/MIDI bytes) → engraved MusicXML and per-note
  predictions.

:mod:`.pyfunc` holds what the three share: logging and registering a model, loading one from a
folder or a ``models:/NAME@alias`` URI.
"""
