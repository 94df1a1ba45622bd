#!/usr/bin/env bash
# Makes the speech the SIP tests play into calls (committed; run again only
# to change them): 8 kHz mono 16-bit WAV, as a phone line carries.
#   greeting.wav  a voicemail greeting (about 6 s of speech)
#   hello.wav     a person answering: "Hello?", then silence
# Needs espeak-ng and sox (Debian: apt-get install espeak-ng sox).
set -euo pipefail
cd "$(dirname "$0")"
say() { espeak-ng -v en-us -s 160 --stdout "$1" | sox -t wav - -r 8000 -c 1 -b 16 "$2" "${@:3}"; }
say "Hi, you have reached the voicemail of Jordan Smith. I cannot take your call right now. Please leave a message after the tone." greeting.wav
say "Hello?" hello.wav pad 0.4 2.0
