#!/usr/bin/env bash
# Copies noVNC's browser library (core/ and the pako it imports) from Debian's
# novnc package into console/web/assets/novnc, with its copyright and licence texts,
# for vnc-proxy's console page to embed. Run after installing the package
# (apt-get install novnc) to move to the version Debian ships.
set -euo pipefail
src=/usr/share/novnc
dst="$(cd "$(dirname "$0")/.." && pwd)/console/web/assets/novnc"
version="$(dpkg-query -W -f '${Version}' novnc)"
rm -rf "$dst"
mkdir -p "$dst/vendor"
cp -r "$src/core" "$dst/core"
cp -r "$src/vendor/pako" "$dst/vendor/pako"
cp /usr/share/doc/novnc/copyright "$dst/COPYRIGHT"
cp /usr/share/common-licenses/MPL-2.0 "$dst/LICENSE.MPL-2.0"
find "$dst" -type f -exec chmod 0644 {} +
cat > "$dst/VERSION" <<TXT
noVNC from Debian's novnc package ${version}, copied by hack/vendor-novnc.sh.
TXT
echo "vendored noVNC ${version} into ${dst}"
