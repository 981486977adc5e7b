# bindcar on distroless Python: the three modules, no shell, no package manager.
#   docker build -t bindcar .
#   docker run -p 8080:8080 -e RNDC_SERVER=... -e RNDC_SECRET=... -e BIND_API_TOKEN=... \
#       -v /var/cache/bind:/var/cache/bind bindcar
FROM gcr.io/distroless/python3-debian13

COPY bindcar.py rndc_proto.py zonefile.py LICENSE /app/

# 101:101 is the UID and GID the upstream bindcar image runs as; the zone volume
# must be writable by it (and readable by named).
USER 101:101
EXPOSE 8080

# -E ignores PYTHON* variables, -s the user site, -B writes no .pyc into /app.
# Not -I: it would drop /app from the import path and the sibling modules with it.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/bin/python3", "-E", "-s", "-B", "/app/bindcar.py", "--healthcheck"]
ENTRYPOINT ["/usr/bin/python3", "-E", "-s", "-B", "/app/bindcar.py"]
