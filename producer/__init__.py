"""The front: the Python producer, the HTTP API (/api, /v1 Files + Batches), the web console, templates,
workflows and the `mmq` CLI. It imports the core (mmq/); of the worker, only what starts one."""
