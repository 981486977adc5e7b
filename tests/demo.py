"""make demo: a private named on loopback, and commands to try against it.

Stops named on Ctrl-C.  Nothing outside a temporary directory is touched.
"""

import os
import signal
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from conftest import NamedServer  # noqa: E402

ROOT = os.path.dirname(HERE)


def main():
    with tempfile.TemporaryDirectory(prefix="bindcar-demo-") as d:
        named = NamedServer(d).start()
        rndc = f"python3 {os.path.join(ROOT, 'rndc_proto.py')} -c {named.rndc_conf}"
        with open(os.path.join(d, "demo.test.zone"), "w") as f:
            f.write("$TTL 300\n@ SOA ns1.demo.test. admin.demo.test. 1 3600 600 604800 300\n"
                    "@ NS ns1.demo.test.\nns1 A 127.0.0.1\nwww A 192.0.2.10\n")
        print(f"""named is running on 127.0.0.1 (DNS port {named.dns_port}, control port \
{named.control_port}) in {d}.
Try, in another terminal:

  {rndc} status
  {rndc} addzone demo.test '{{ type primary; file "demo.test.zone"; }};'
  dig @127.0.0.1 -p {named.dns_port} +short www.demo.test
  {rndc} zonestatus demo.test
  {rndc} delzone -clean demo.test

Press Ctrl-C to stop.""", flush=True)
        try:
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
        except KeyboardInterrupt:
            pass
        finally:
            named.stop()
            print("stopped.")


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    main()
