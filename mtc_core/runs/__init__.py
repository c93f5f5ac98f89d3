"""Run folders as one protocol: their files, saving and loading, the checkpoint unit, zip import and the zoo.

`files` (names, atomic writes, bounded JSON, listing), `weights` (safetensors, header checked by hand), `run_dir`
(save_run / load_run), `checkpoint` (weights and trainer state as one atomic file), `lock` (held by the process that
trains a run), `zip_import`, `zoo`.
The names below are the ones the rest of the project calls as `runs.NAME`.
"""

from mtc_core.data.spec import check_dataset_spec, short_repr
from mtc_core.runs.files import (
    CONFIG,
    FORMAT_VERSION,
    HISTORY,
    MAX_HISTORY_BYTES,
    MAX_IMPORTED_HISTORY_BYTES,
    MAX_JSON_BYTES,
    METRICS,
    STALE_TMP_SECONDS,
    STATUSES,
    WEIGHTS,
    CheckpointError,
    atomic_write_bytes,
    check_writable_folder,
    clean_orphans,
    error_text,
    is_disk_full,
    iter_history,
    json_safe,
    last_history_record,
    list_runs,
    new_run_dir,
    package_versions,
    parse_json,
    publish_mode,
    read_history,
    read_json,
    unique_dir,
    write_history,
    write_json,
)
from mtc_core.runs.lock import LOCK, RunBusy, busy_message, hold_run_lock, holding_run_lock, refuse_if_busy, run_lock_holder
from mtc_core.runs.run_dir import (
    check_run_state,
    expected_tensors,
    load_run,
    model_config,
    model_params,
    read_run_config,
    save_run,
)
from mtc_core.runs.weights import (
    DTYPES,
    MAX_HEADER_BYTES,
    TENSOR_DTYPE_NAMES,
    TensorInfo,
    atomic_save_file,
    check_header,
    read_safetensors_header,
    read_tensors,
    save_weights,
    state_tensors,
)

__all__ = [
    "CONFIG", "DTYPES", "FORMAT_VERSION", "HISTORY", "MAX_HEADER_BYTES", "MAX_HISTORY_BYTES", "MAX_IMPORTED_HISTORY_BYTES", "MAX_JSON_BYTES",
    "METRICS",
    "LOCK", "RunBusy", "busy_message", "hold_run_lock", "holding_run_lock", "refuse_if_busy", "run_lock_holder",
    "STALE_TMP_SECONDS", "STATUSES", "TENSOR_DTYPE_NAMES", "WEIGHTS", "CheckpointError", "TensorInfo", "atomic_save_file",
    "atomic_write_bytes", "check_dataset_spec", "check_header", "check_run_state", "check_writable_folder", "clean_orphans",
    "error_text", "expected_tensors", "is_disk_full", "iter_history", "json_safe", "last_history_record", "list_runs",
    "load_run", "model_config", "model_params", "new_run_dir", "unique_dir", "package_versions", "parse_json", "publish_mode", "read_history",
    "read_json", "read_run_config", "read_safetensors_header", "read_tensors", "save_run", "save_weights", "short_repr",
    "state_tensors", "write_history", "write_json",
]
