"""Background jobs: Huey runs them in a worker process; the ``Job`` table is what users see.

- :mod:`jobs.queue`: the Huey instance (SQLite in the data dir, or Redis) and the one task.
- :mod:`jobs.service`: create, list, cancel and retry jobs (what the API and CLI call).
- :mod:`jobs.runner`: runs one job inside the worker: progress, cancellation, heartbeat, logs.
- :mod:`jobs.tasks`: what each job kind does.
- :mod:`jobs.rounds`: the retraining round.
- :mod:`jobs.worker`: ``panelbeater worker`` and :func:`jobs.worker.start_worker_process`.
"""
