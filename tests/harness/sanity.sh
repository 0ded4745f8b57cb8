#!/usr/bin/env bash
# ansible-test sanity on a copy of the collection placed at ansible_collections/gpubox/llm.
# No ignore file: every finding fails. Extra args go to ansible-test.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

dest="$GPUBOX_CACHE/sanity/ansible_collections/gpubox/llm"
mkdir -p "$dest"
cd "$GPUBOX_ROOT"
# What git would ship: tracked files plus untracked ones that are not ignored. The
# collections/ link back to the checkout is a convenience of the checkout, not content.
git ls-files -z --cached --others --exclude-standard \
  | grep -zv '^collections/' \
  | rsync -a --delete --files-from=- --from0 ./ "$dest/"
# rsync --delete only prunes with a directory source; drop stale files ourselves.
(cd "$dest" && find . -type f ! -path './tests/output/*' -print0) | while IFS= read -r -d '' f; do
  [ -e "$GPUBOX_ROOT/$f" ] || rm -f "$dest/$f"
done
cd "$dest"
# ansible-test bootstraps pip in its venvs with a script from a site this network cannot reach;
# it documents placing that script in its cache instead.
pip_version="$(grep -oP "pip='\K[0-9.]+" "$(python3 -c 'import ansible_test, os; print(os.path.dirname(ansible_test.__file__))')/_internal/python_requirements.py" | head -n1)"
bootstrap="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
if [ -n "$pip_version" ] && [ ! -f "$bootstrap" ]; then
  mkdir -p "$(dirname "$bootstrap")"
  cp "$GPUBOX_ROOT/tests/harness/get_pip_offline.py" "$bootstrap"
fi
py="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
exec ansible-test sanity --python "$py" --venv --color no "$@"
