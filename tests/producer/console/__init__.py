"""Tests of the web console (producer/console) in process: in-memory Redis, a local store, no browser."""
