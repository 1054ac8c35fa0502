"""An independent check of the hub's transparency log: RFC 9162's verification algorithms
(§2.1.3.2 inclusion, §2.1.4.2 consistency) written again with nothing but hashlib, and the C2SP
checkpoint's text read by hand.

Reads JSON on stdin:
  {"checkpoints": [note, ...],
   "consistency": [{"old": n, "new": m, "proof": [hex, ...]}, ...],
   "inclusion": [{"index": i, "size": n, "leaf": hex of the entry's canonical bytes,
                  "proof": [hex, ...]}, ...]}
Each consistency and inclusion item is checked against the roots of the checkpoints of its sizes.
Prints one line per item, `consistency i: OK` or `... FAIL`, and exits 0.
"""

import base64
import hashlib
import json
import sys


def h(data):
    return hashlib.sha256(data).digest()


def leaf_hash(leaf):
    return h(b"\x00" + leaf)


def node(left, right):
    return h(b"\x01" + left + right)


def read_checkpoint(note):
    text = note.split("\n\n", 1)[0]
    origin, size, root = text.split("\n")[:3]
    return origin, int(size), base64.b64decode(root)


def verify_inclusion(index, size, leaf, proof, root):
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first, second, first_root, second_root, proof):
    if first == second:
        return not proof and first_root == second_root
    if first == 0 or first > second or not proof:
        return False
    if first & (first - 1) == 0:
        proof = [first_root] + proof
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = proof[0]
    for c in proof[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node(c, fr)
            sr = node(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


def main():
    asked = json.load(sys.stdin)
    roots = {}
    for note in asked["checkpoints"]:
        _, size, root = read_checkpoint(note)
        roots[size] = root
    for i, item in enumerate(asked.get("consistency", [])):
        proof = [bytes.fromhex(p) for p in item["proof"]]
        ok = verify_consistency(
            item["old"], item["new"], roots[item["old"]], roots[item["new"]], proof
        )
        print(f"consistency {i}: {'OK' if ok else 'FAIL'}")
    for i, item in enumerate(asked.get("inclusion", [])):
        proof = [bytes.fromhex(p) for p in item["proof"]]
        leaf = leaf_hash(bytes.fromhex(item["leaf"]))
        ok = verify_inclusion(item["index"], item["size"], leaf, proof, roots[item["size"]])
        print(f"inclusion {i}: {'OK' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
