# Reads {"users": {name: password}, "current": {name: hash}} on stdin; prints {name: hash}: the current hash
# while it verifies the password, else a new bcrypt hash (random salt). Run on the host (python3-bcrypt).
import json
import sys

import bcrypt

data = json.load(sys.stdin)
hashes = {}
for name, password in data["users"].items():
    secret = password.encode()
    current = str(data["current"].get(name) or "")
    try:
        keep = current.startswith("$2") and bcrypt.checkpw(secret, current.encode())
    except ValueError:
        keep = False
    hashes[name] = current if keep else bcrypt.hashpw(secret, bcrypt.gensalt(rounds=10)).decode()
print(json.dumps(hashes))
