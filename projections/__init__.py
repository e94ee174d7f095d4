"""Read models fed by the log: task state, KPI and compliance views."""
