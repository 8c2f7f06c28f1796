# SAMUeL — set up, test, build the book. Everything installs from this repository's own files.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= demo
export HF_HUB_OFFLINE ?= 1
export OMP_NUM_THREADS ?= 2

.PHONY: setup system test book bench clean

# Debian packages: ffmpeg (yt-dlp audio), FluidSynth + a GM soundfont (offline corpus), and
# fretsonfire-songs-muldjord (four recorded multitracks: `samuel evaluate --real`; optional).
# Installed where we are root with apt; elsewhere the project falls back (built-in synth).
system:
	@if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  (command -v ffmpeg >/dev/null && command -v fluidsynth >/dev/null && ls /usr/share/sounds/sf2/*.sf2 >/dev/null 2>&1) || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg fluidsynth timgm6mb-soundfont >/dev/null) || \
	  echo "note: could not install ffmpeg/fluidsynth; downloads and FluidSynth rendering are unavailable"; \
	  [ -d /usr/share/games/fretsonfire/data/songs/muldjord ] || \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fretsonfire-songs-muldjord >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fretsonfire-songs-muldjord >/dev/null 2>&1) || \
	  echo "note: could not install fretsonfire-songs-muldjord; the real-recordings evaluation is unavailable"; \
	fi

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python requirements.txt pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# AudioBox-Aesthetics (paper Table I) without its declared dependencies: it declares torchaudio,
# which has no CPU build beside torch 2.13. Its model class needs only torch, numpy,
# huggingface_hub and safetensors (requirements.txt); samuel.aesthetics does the audio input.
$(VENV)/.aesthetics: $(VENV)/.installed
	$(BIN)/pip install -q --no-deps audiobox-aesthetics==0.0.4
	touch $@

setup: system $(VENV)/.installed $(VENV)/.aesthetics

# Unit tests (which include the whole book on `smoke`, every recorded result checked against
# book/results/smoke.json), then nbval re-executes notebooks 01-03 on `demo` and compares their
# checked outputs with the committed ones. 04-06 train and evaluate two demo models (~45 min),
# beyond CI's budget: the smoke run checks them; `samuel book check` checks a demo run.
NBVAL_DEMO := notebooks/01_data_collection.ipynb notebooks/02_vae_encoding.ipynb notebooks/03_model.ipynb

test: setup
	$(BIN)/python -m pytest -q tests
	$(BIN)/python -m pytest -q -p no:cacheprovider --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg $(NBVAL_DEMO)

book: setup
	$(BIN)/samuel book run --profile $(PROFILE)

bench: setup
	$(BIN)/samuel bench model --profile paper

clean:
	rm -rf $(VENV) runs _build
