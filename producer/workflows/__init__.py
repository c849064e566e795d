"""Catalog and recording workflows: a folder, a CSV or a text file becomes BatchLines; a finished batch
becomes CSV / JSONL / TXT / SRT / VTT / media files on disk.

The `mmq caption`, `mmq transcribe`, `mmq generate-images` and `mmq speak` commands (producer/cli/
workflows.py) are built from these modules:
    inputs.py       folders of images or audio, text files with one prompt per line → BatchLines
    caption_csv.py  an `id,url[,prompt]` CSV → caption BatchLines
    reading.py      a batch read back from its records and storage: jobs in order, result bodies
    outputs.py      the writers: captions.csv/.jsonl, transcripts (.txt/.srt/.vtt), images, speech
Subtitles themselves are written by mmq/subtitles.py, shared with the worker.
"""
