"""A text-to-speech stand-in for the SIP tests (`tts = "python3 tts.py"`):
writes to standard output an 8 kHz WAV of a 440 Hz tone, 50 ms per
character of its last argument."""
import io
import math
import struct
import sys
import wave

text = sys.argv[-1]
n = 400 * len(text)
buf = io.BytesIO()
with wave.open(buf, "wb") as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(8000)
    w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * k / 8000))) for k in range(n)))
sys.stdout.buffer.write(buf.getvalue())
