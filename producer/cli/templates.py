"""`mmq template save|list|show|run`: prompt templates (producer/templates/), per tenant, in Redis."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmq.settings import Settings
from producer.cli.common import CtrlC, with_records
from producer.cli.flags import add_deprecated, add_out, add_tenant, add_watch
from producer.cli.inputs import input_file
from producer.cli.options import (
    add_cache_options,
    add_config_option,
    add_media_options,
    add_schedule_options,
    batch_options,
)

if TYPE_CHECKING:  # imported lazily at run time: `mmq --help` stays fast
    from redis.asyncio import Redis

    from mmq.storage import Storage


def _template_store(settings: Settings, redis: Redis, storage: Storage) -> Any:
    from producer.options import allowed_hosts
    from producer.templates.store import TemplateStore

    return TemplateStore(redis, storage, settings.key_prefix, allowed_hosts(settings))


def cmd_template_save(args: argparse.Namespace) -> int:
    from producer.templates.model import TemplateError

    path = input_file(args.file, kind="a template JSON file")
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        sys.exit(f"mmq: {path}: {e.strerror or e}")
    except ValueError as e:
        sys.exit(f"mmq: {path}: not valid JSON ({e})")
    if not isinstance(spec, dict):
        sys.exit(f"mmq: {path}: a template is a JSON object")
    if args.name:
        spec["name"] = args.name
    spec.setdefault("name", path.stem)

    async def go(settings, redis, records, storage):
        try:
            template, created = await _template_store(settings, redis, storage).save(args.tenant, spec)
        except TemplateError as e:
            sys.exit(f"mmq: {path}: {e}")
        print(template.ref)
        what = "new version" if created else "unchanged (same content as this version)"
        variables = ", ".join(template.variables) or "none"
        print(f"mmq: template {template.ref}: {what}; variables: {variables}", file=sys.stderr)
        return 0

    return asyncio.run(with_records(go))


def cmd_template_list(args: argparse.Namespace) -> int:
    async def go(settings, redis, records, storage):
        found = await _template_store(settings, redis, storage).list(args.tenant)
        for template, count in found:
            variables = ",".join(template.variables) or "-"
            print(f"{template.ref}\t{template.url}\t{template.model or '-'}\t{variables}\t{count} version(s)")
        if not found:
            print(f"mmq: no templates for tenant {args.tenant!r}", file=sys.stderr)
        return 0

    return asyncio.run(with_records(go))


def cmd_template_show(args: argparse.Namespace) -> int:
    from producer.templates.model import TemplateNotFound

    async def go(settings, redis, records, storage):
        store = _template_store(settings, redis, storage)
        try:
            if args.versions:
                shown: Any = [v.model_dump() for v in await store.versions(args.tenant, args.template)]
            else:
                template = await store.get(args.tenant, args.template)
                shown = template.view(latest=await store.latest(args.tenant, template.name))
        except TemplateNotFound as e:
            sys.exit(f"mmq: {e}")
        print(json.dumps(shown, indent=2, ensure_ascii=False))
        return 0

    return asyncio.run(with_records(go))


def cmd_template_run(args: argparse.Namespace) -> int:
    from producer.cli.progress import watch
    from producer.options import LineError
    from producer.templates.model import TemplateError, TemplateNotFound
    from producer.templates.rows import aiter_file_lines, read_rows, row_format
    from producer.templates.run import run_template, write_results

    path = input_file(args.rows, kind="a CSV or JSONL file of rows")

    async def go(settings, redis, records, storage):
        try:
            template = await _template_store(settings, redis, storage).get(args.tenant, args.template)
            rows = await read_rows(aiter_file_lines(path), args.rows_format or row_format(path.name))
            batch = await run_template(
                redis,
                storage,
                settings,
                template,
                rows,
                metadata={"source": path.name},
                allow_local_paths=True,  # a transcription template's {{file}} may name a local file
                base_dir=path.parent,
                **batch_options(args, None),
            )
        except (TemplateNotFound, TemplateError, LineError) as e:
            sys.exit(f"mmq: {e}")
        print(batch.id, flush=True)
        print(
            f"mmq: batch {batch.id} from {template.ref}: {batch.counts.total} jobs, "
            f"{batch.invalid_lines} invalid; follow with `mmq status {batch.id} --watch`",
            file=sys.stderr,
        )
        if not (args.watch or args.out):
            return 0
        with CtrlC() as ctrl_c:
            batch = await watch(records, batch.id, stop=ctrl_c.event)
        if ctrl_c.event.is_set():
            print(f"\nmmq: detached; batch {batch.id} keeps running in the workers", file=sys.stderr)
            return 130
        if args.out:
            ok, failed, files = await write_results(records, storage, batch.id, Path(args.out))
            print(
                f"mmq: {ok} ok, {failed} failed; in {args.out}/: results.csv, output.jsonl, {files} files",
                file=sys.stderr,
            )
        return 0

    return asyncio.run(with_records(go))


def add_parsers(sub: Any) -> None:
    t = sub.add_parser("template", help="prompt templates: save, list, show, run over CSV/JSONL rows")
    tsub = t.add_subparsers(dest="template_command", required=True, metavar="{save,list,show,run}")

    save = tsub.add_parser("save", help="save a template (JSON file); prints name@version")
    save.add_argument("file", metavar="FILE.json", help="the template: name, url, prompt, parameters…")
    save.add_argument("--name", help="the template's name (default: its `name`, else the file name)")
    save.set_defaults(fn=cmd_template_save)

    ls = tsub.add_parser("list", help="the latest version of each template")
    ls.set_defaults(fn=cmd_template_list)

    show = tsub.add_parser("show", help="one template as JSON (default: the latest version)")
    show.add_argument("template", metavar="NAME[@VERSION]", help="the template (latest version without @)")
    show.add_argument("--versions", action="store_true", help="list its versions instead")
    show.set_defaults(fn=cmd_template_show)

    run = tsub.add_parser("run", help="one job per row of a CSV (with a header) or JSONL file")
    run.add_argument("template", metavar="NAME[@VERSION]", help="the template (latest version without @)")
    run.add_argument(
        "rows", metavar="ROWS.csv|ROWS.jsonl", help="one job per row; columns fill {{variables}}"
    )
    run.add_argument(
        "--rows-format", choices=["csv", "jsonl"], help="how ROWS is written (default: from its extension)"
    )
    add_deprecated(run, "--format", dest="rows_format", use="--rows-format (--format is a result format)")
    add_watch(run, default=False)
    add_out(run, "wait, then write results.csv, output.jsonl and files/ to this folder")
    add_config_option(run, "for every job: replaces the template's")
    add_media_options(run)
    add_cache_options(run)
    add_schedule_options(run)
    run.set_defaults(fn=cmd_template_run)
    for p in (save, ls, show, run):
        add_tenant(p)
