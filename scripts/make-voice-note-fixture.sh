#!/usr/bin/env bash
# Regenerates sandbox/fixtures/voice-note.ogg: a real OGG/Opus voice note (mono, speech, about
# 3 s, a few KB) of the sentence the transcription stand-in answers by default, for the tests
# of media downloads, duration checks and the transcription stand-in, and for `make chat`'s
# `/voice`.
#
# The file is committed: nothing at build or test time runs this script or needs its tools
# (espeak-ng and opus-tools; on Debian: apt-get install espeak-ng opus-tools).
# The output is deterministic for the same tool versions (a fixed stream serial number).
set -euo pipefail

cd "$(dirname "$0")/.."
out=sandbox/fixtures/voice-note.ogg
text="Hola, quiero saber el precio del seguro"

for tool in espeak-ng opusenc; do
    command -v "$tool" >/dev/null || { echo "$0: needs $tool (espeak-ng, opus-tools)" >&2; exit 1; }
done

wav=$(mktemp --suffix=.wav)
trap 'rm -f "$wav"' EXIT
# Latin-American Spanish, as the bridge's customers speak.
espeak-ng -v es-419 -s 160 -w "$wav" "$text"
# WhatsApp's voice notes are mono Opus at a low speech bitrate in an OGG container.
opusenc --quiet --speech --bitrate 16 --downmix-mono --serial 1 --discard-comments \
    "$wav" "$out"
echo "$out: $(stat -c %s "$out") bytes"
