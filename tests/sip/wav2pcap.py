"""Writes a pcap of RTP (G.711 µ-law, 20 ms packets) from an 8 kHz mono
16-bit WAV files played one after the other, for sipp's play_pcap_audio:
python3 wav2pcap.py IN.wav [IN2.wav …] OUT.pcap"""
import struct
import sys
import wave


def ulaw(sample):
    # ITU-T G.711 µ-law, as Sun's g711.c.
    bias, clip = 0x84, 32635
    sign = 0x80 if sample < 0 else 0
    if sample < 0:
        sample = -sample
    sample = min(sample, clip) + bias
    exponent, mask = 7, 0x4000
    while exponent > 0 and not sample & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (sample >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def main(sources, dst):
    data = b""
    for src in sources:
        with wave.open(src) as w:
            assert w.getframerate() == 8000 and w.getnchannels() == 1 and w.getsampwidth() == 2
            data += w.readframes(w.getnframes())
    samples = struct.unpack(f"<{len(data) // 2}h", data)
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for k in range(len(samples) // 160):
        payload = bytes(ulaw(s) for s in samples[k * 160:(k + 1) * 160])
        rtp = struct.pack("!BBHII", 0x80, 0, k & 0xFFFF, k * 160, 0x1234) + payload
        udp = struct.pack("!HHHH", 6000, 6000, 8 + len(rtp), 0) + rtp
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), k & 0xFFFF, 0, 64, 17, 0,
                         bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])) + udp
        frame = b"\0" * 12 + b"\x08\x00" + ip
        t = k * 20_000
        out.append(struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(frame), len(frame)) + frame)
    with open(dst, "wb") as f:
        f.write(b"".join(out))


if __name__ == "__main__":
    main(sys.argv[1:-1], sys.argv[-1])
