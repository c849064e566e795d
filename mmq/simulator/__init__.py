"""OpenAI-dialect provider simulator for mmq tests, benchmarks and demos.

Every answer is real (decoded images, rendered PNGs, tone-coded speech) and deterministic for a seed,
and is labelled as simulated ("[mmq simulator]" text, x-mmq-simulator header).
"""

from __future__ import annotations

from mmq.simulator.app import create_app
from mmq.simulator.imaging import colour_name, describe_image
from mmq.simulator.knobs import SimulatorConfig
from mmq.simulator.speech import decode_speech_wav, encode_speech_wav

__all__ = [
    "SimulatorConfig",
    "colour_name",
    "create_app",
    "decode_speech_wav",
    "describe_image",
    "encode_speech_wav",
    "serve",
]


def serve(config: SimulatorConfig, host: str = "127.0.0.1", port: int = 8090) -> None:
    """Run the simulator with uvicorn until interrupted (blocking)."""
    import uvicorn  # imported lazily: tests and in-process users never need it

    uvicorn.run(create_app(config), host=host, port=port, log_level="warning", access_log=False)
