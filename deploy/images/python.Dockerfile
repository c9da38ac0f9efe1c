# A Python 3.11 base made from Debian's packages only, standing in for the public python image
# where no public registry answers (deploy/image.sh): `python` and `pip` on PATH like there,
# from a virtual environment over Debian's python3.11 in /usr/local/python.
ARG DEBIAN_IMAGE=localhost/callvault/debian:bookworm
FROM ${DEBIAN_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /usr/local/python \
    && /usr/local/python/bin/python -c "import sys; assert sys.version_info >= (3, 11)"
ENV PATH=/usr/local/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8
CMD ["python3"]
