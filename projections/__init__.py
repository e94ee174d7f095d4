"""Read models fed by the log: task state, KPI and compliance views."""

from projections.task_rows import TaskRows, fold_safely, from_micros, micros, rows_for
from projections.tasks import ProjectionError, TaskProjection

__all__ = [
    "ProjectionError",
    "TaskProjection",
    "TaskRows",
    "fold_safely",
    "from_micros",
    "micros",
    "rows_for",
]
