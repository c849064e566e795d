"""`python -m mmq.simulator [--host H] [--port P]`; knobs come from MMQ_SIM_* env vars."""

from __future__ import annotations

import argparse

from mmq.simulator import SimulatorConfig, serve


def main() -> None:
    parser = argparse.ArgumentParser(description="mmq OpenAI-dialect provider simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args()
    serve(SimulatorConfig.from_env(), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
