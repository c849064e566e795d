"""The providers' native batch APIs, simulated: OpenAI, Azure OpenAI and Groq Files + Batches, Anthropic
Message Batches, and Gemini batch mode (inline and file input).

Why: mmq's batch tier sends eligible jobs through these APIs for the discount and must survive what
they do: slow validation, lines finishing one by one, partial failures, expiry (finished lines kept
and billed), slow cancellation, stalls, files to upload and download, and crash recovery by metadata.
One engine (engine.py, on timeline.py) runs every batch's lifecycle under the SimulatorConfig.batch_*
knobs; each line is answered by the provider's realtime handler (calls.py), so its usage is exactly
what the realtime endpoint reports; a module per API renders it on the wire:
- oai_surfaces, oai_input, oai_wire, oai_files, oai_batches, oai_routes: the OpenAI format, for OpenAI,
  Azure and Groq (groq_audio: Groq's audio lines);
- anthropic: Message Batches;
- gemini, gemini_wire, gemini_files: batch mode and the Files API it needs;
- bedrock, bedrock_wire, bedrock_s3: Bedrock batch inference (CreateModelInvocationJob), its records
  read from and its answers written to a real S3-compatible server (MMQ_SIM_S3_ENDPOINT);
- vertex, vertex_wire: Vertex AI batch prediction for Gemini and Claude on Vertex, its JSONL input and
  predictions in the simulator's own Cloud Storage (simulator/gcs.py, gcs_store.py).
routes.py mounts them all, plus GET/POST /sim/batches to read and change the batch knobs at run time.

Not simulated: BigQuery input and output (Vertex). The state (simulator/state.py) holds the engine
through a Protocol, since the route modules import the realtime handlers, which import the state.
"""
