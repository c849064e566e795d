"""The worker program: arq workers that run jobs (claim → cache → media → plan → attempts → store → finish)
and the batch tier's steps. It imports the core (mmq/) and never the front (producer/)."""
