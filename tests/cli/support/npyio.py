"""Minimal .npy reading/writing with the standard library only, so the CLI
tests need no numpy.  Usage from shell:
  python3 npyio.py write PATH DESCR SHAPE VALUES...   (SHAPE like 2,3)
  python3 npyio.py read PATH                          (prints shape then values)
"""
import struct, sys, ast

FMT = {"<f4": "f", "<f8": "d", "<i4": "i", "<i8": "q", "|u1": "B", "<f2": "e", "<u2": "H"}

def write(path, descr, shape, values, version=1):
    header = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        descr, "".join("%d, " % s for s in shape) if len(shape) != 1 else "%d," % shape[0])
    pad = (64 - (10 + len(header) + 1) % 64) % 64
    header = header + " " * pad + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY" + bytes([version, 0]) + struct.pack("<H", len(header)))
        f.write(header.encode())
        f.write(struct.pack("<%d%s" % (len(values), FMT[descr]), *values))

def read(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:6] == b"\x93NUMPY", "bad magic"
    hlen = struct.unpack("<H", data[8:10])[0]
    h = ast.literal_eval(data[10:10 + hlen].decode())
    n = 1
    for s in h["shape"]:
        n *= s
    vals = struct.unpack("<%d%s" % (n, FMT[h["descr"]]), data[10 + hlen:10 + hlen + n * struct.calcsize(FMT[h["descr"]])])
    return h["shape"], list(vals)

if __name__ == "__main__":
    if sys.argv[1] == "write":
        path, descr, shape = sys.argv[2], sys.argv[3], [int(s) for s in sys.argv[4].split(",") if s]
        conv = float if descr[1] == "f" else int
        write(path, descr, shape, [conv(v) for v in sys.argv[5:]])
    else:
        shape, vals = read(sys.argv[2])
        print(" ".join(map(str, shape)))
        print(" ".join(repr(v) for v in vals))
