"""The schema of ``params.yaml``: one pydantic model per section, checked before anything runs.

Every stage reads its section through :func:`overseer.stage.load_params`, which checks it with
:func:`check_section`; ``overseer tune`` checks the section it tunes (:func:`load_tuning_params`)
and ``overseer check`` the whole file and the data it points at (:func:`check_params_file`).
A check returns the section exactly as YAML gave it (the models only judge, they convert
nothing), so a valid file trains exactly what it trained before there was a schema.

Problems are :class:`~overseer.errors.InputError` s, one line per problem, all of a section at once::

    params.yaml: train_rf.max_dpth: unknown key; did you mean max_depth?
    params.yaml: train_gnn.window: must be >= 1, got 0

Types are strict (``"fast"`` is no learning rate, ``"true"`` no boolean, ``2.0`` no epoch count);
an integer is a valid number (``tolerance: 0``), and so is a string in YAML 1.2 number syntax
(``3e-4``: PyYAML reads it as a string, and ``dvc exp run -S train_cnn.learning_rate=3e-4`` writes
it so; the stages convert it with ``float()`` as they always did). A key the stage reads without a
default is required; keys the library has defaults for (``overseer.seismic.forest.DEFAULTS``,
``overseer.engraving.train.DEFAULTS``, ``overseer.engraving.data.ingest.DEFAULTS``) may be left out.

The choices below mirror the code that consumes each key; ``tests/unit/test_params.py`` checks
them against the library's own constants.

Knobs that cannot change a result (progress bars, thread counts, prediction chunk sizes, the parse
cache folder) are not params: DVC would re-run a stage for them. They are run-time settings
(:mod:`overseer.settings`: environment variables, then an untracked ``overseer.local.yaml``), and a
params file that still sets one is refused with where it went::

    params.yaml: train_gnn.progress: is a run-time setting now, not a param (it cannot change results):
    remove it from params.yaml; to keep false, set OVERSEER_PROGRESS=0 or progress: false in overseer.local.yaml
"""

from overseer.params.check import (
    check_params_file,
    check_section,
    data_problems,
    load_tuning_params,
    problems,
    read_params,
)

__all__ = ["check_params_file", "check_section", "data_problems", "load_tuning_params", "problems", "read_params"]
