#!/bin/sh
# base-image.sh builds shoal-flask-base:local, a Debian bookworm root
# filesystem with python3, Flask and gunicorn from Debian packages, imported
# into Docker. It lets the Flask example build with no registry access:
#
#   compose/flask/base-image.sh
#   docker build --build-arg BASE_IMAGE=shoal-flask-base:local compose/flask
#
# It does nothing when the image already exists (set FORCE=1 to rebuild). It
# needs root (debootstrap), installs debootstrap with apt-get when it is
# missing, and takes the Debian mirror from /etc/apt/sources.list(.d) unless
# MIRROR is set. IMAGE overrides the tag.
set -eu

IMAGE=${IMAGE:-shoal-flask-base:local}
SUITE=${SUITE:-bookworm}
PACKAGES=${PACKAGES:-python3-flask,gunicorn}

log() { echo "base-image: $*" >&2; }

if [ "${FORCE:-0}" != 1 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
	log "$IMAGE exists; nothing to do (FORCE=1 rebuilds it)"
	exit 0
fi

if [ "$(id -u)" != 0 ]; then
	SUDO=sudo
else
	SUDO=
fi

if ! command -v debootstrap >/dev/null 2>&1; then
	log "installing debootstrap with apt-get"
	$SUDO apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

# mirror prints the first Debian archive URI configured for apt, skipping
# the security archive: deb822 "URIs:" lines in *.sources, one-line "deb"
# entries in sources.list and *.list.
mirror() {
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' "$f"
	done
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /\]$/) { print $i; break } }' "$f"
	done
}
if [ -z "${MIRROR:-}" ]; then
	MIRROR=$(mirror | grep -v -e security -e '^$' | grep -i debian | head -n 1 || true)
fi
MIRROR=${MIRROR:-http://deb.debian.org/debian}

DIR=$(mktemp -d "${TMPDIR:-/tmp}/shoal-flask-base.XXXXXX")
cleanup() { $SUDO rm -rf "$DIR"; }
trap cleanup EXIT INT TERM

start=$(date +%s)
log "debootstrap --variant=minbase --include=$PACKAGES $SUITE from $MIRROR (a few minutes)"
# debootstrap is chatty; keep its log and print its progress lines only.
if ! $SUDO debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$DIR" "$MIRROR" >"$DIR.log" 2>&1; then
	tail -n 30 "$DIR.log" >&2
	rm -f "$DIR.log"
	log "debootstrap failed"
	exit 1
fi
grep -E '^I: (Retrieving|Validating|Installing|Configuring|Base system)' "$DIR.log" | sed -n '1p;$p' >&2 || true
rm -f "$DIR.log"

# Slim the tree: package caches, indexes and documentation are not needed to
# run python3.
$SUDO rm -rf "$DIR"/var/cache/apt/archives/*.deb "$DIR"/var/cache/apt/*.bin \
	"$DIR"/var/lib/apt/lists/* "$DIR"/usr/share/doc/* "$DIR"/usr/share/man/* \
	"$DIR"/usr/share/info/* "$DIR"/usr/share/locale/* "$DIR"/var/log/*

log "importing $(du -sh "$DIR" | cut -f1) as $IMAGE"
$SUDO tar --numeric-owner -C "$DIR" -c . | docker import \
	--change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
	--change 'ENV LANG=C.UTF-8' \
	--change 'LABEL org.opencontainers.image.description="Debian bookworm minbase with python3, Flask and gunicorn from Debian packages"' \
	--change 'CMD ["python3"]' \
	- "$IMAGE" >/dev/null
docker run --rm "$IMAGE" python3 -c 'import flask, gunicorn; print("base-image: flask", flask.__version__ if hasattr(flask, "__version__") else "?", "gunicorn", gunicorn.__version__)' >&2
log "built $IMAGE in $(($(date +%s) - start))s"
