"""Prompt templates: a saved request with `{{variables}}`, run once per row of a CSV or JSONL file.

    store = TemplateStore(redis, storage)
    template, created = await store.save("acme", {"name": "caption", "messages": [...], "model": "…"})
    batch = await run_template(redis, storage, settings, template, read_rows(lines, "csv"), tenant="acme")

The modules, in the order a template meets them:
    model.py      what a template is (TemplateSpec as written, Template as saved), its version, its checks
    rendering.py  `{{variables}}`: finding them, filling them in, safely
    store.py      saved versions per tenant in Redis, the template's own media in blob storage
    rows.py       CSV (with a header) or JSONL rows, streamed; a bad row fails alone
    run.py        one batch, a job per row; a finished run's results.csv
    routes.py     the HTTP routes under /api/templates (the CLI's are producer/cli/templates.py)
"""
