# Python repr(float) of assorted doubles (the format json.dumps uses for floats).
# Run: python3 gen_pyfloat_repr.py > pyfloat_repr.json
import struct, random, json
random.seed(5)
vals=[0.0,-0.0,1.0,-1.0,0.5,100.0,1e16,1e15,9999999999999998.0,1e17,1.5e16,1e-5,1e-4,0.0001234,0.00012,1.2e-5,123456789.125,0.1,1/3,2.5e-308,5e-324,1.7976931348623157e308,0.0569254569709301,6.0,1e22,1e21,12345678901234567890.0,1e-7,3.14159e-10]
for i in range(200):
    b=random.getrandbits(64); v=struct.unpack('<d',struct.pack('<Q',b))[0]
    if v==v and abs(v)!=float('inf'): vals.append(v)
for i in range(200):
    # float32 values widened, as nested_offset is
    b=random.getrandbits(32); v=struct.unpack('<f',struct.pack('<I',b))[0]
    if v==v and abs(v)!=float('inf'): vals.append(v)
for i in range(60):
    vals.append(random.uniform(-1,1)*10**random.randint(-20,20))
print(json.dumps([[struct.pack('<d',v).hex(), repr(v)] for v in vals]))
