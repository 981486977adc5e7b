# bindcar on distroless Python: the four modules, compiled, and nothing else.
#   docker build -t bindcar .
#   docker run -p 8080:8080 -e RNDC_SERVER=... -e RNDC_SECRET=... -e BIND_API_TOKEN=... \
#       -v /var/cache/bind:/var/cache/bind bindcar

# Compiled ahead, bindcar idles at ~21 MB: compiling at every start leaves some of the
# compiler's memory behind (~22 MB with -m, ~31 MB run as a script). unchecked-hash: the
# files' times do not matter.
FROM python:3.13-slim AS compile
COPY bindcar.py rndc_proto.py zonefile.py dns_proto.py LICENSE /app/
RUN python3 -m compileall -q --invalidation-mode unchecked-hash /app

FROM gcr.io/distroless/python3-debian13
COPY --from=compile /app /app
WORKDIR /app

# 101:101 is the UID and GID the upstream bindcar image runs as; the zone volume
# must be writable by it (and readable by named).
USER 101:101
EXPOSE 8080

# -E ignores PYTHON* variables, -s the user site, -B writes no .pyc. -m runs the compiled
# module, finding its siblings through WORKDIR. Not -I: it drops them from the path.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/bin/python3", "-E", "-s", "-B", "-m", "bindcar", "--healthcheck"]
ENTRYPOINT ["/usr/bin/python3", "-E", "-s", "-B", "-m", "bindcar"]
