"""Images in: scanning a folder (cached, sharded), decoding the formats (THEMIS, 16-bit),
duplicates, the truth table, frame times, the synthetic sky (:mod:`.synth`).
Must not import preprocess/, models/, extractors/ or anything above them (only infra/)."""
