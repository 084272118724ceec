# Installs what building, running and testing Sumi needs on Debian/Ubuntu, skipping whatever is
# already there: the system packages (apt-get, through sudo unless root), Rust (rustup) when
# cargo is missing, Node.js when node is missing or older than the UI's tools need, and the UI's
# npm packages. Source it, then call the function (it may put Rust and Node on PATH):
#
#     . scripts/deps.sh && sumi_install_deps          # build and run the app
#     . scripts/deps.sh && sumi_install_deps --e2e    # also Xvfb and WebKitWebDriver (.ci/run)
#
# Used by scripts/run-app and .ci/run.

# Node.js fetched from nodejs.org (checked against its SHASUMS256.txt) when none fits.
SUMI_NODE_VERSION="${SUMI_NODE_VERSION:-22.12.0}"
SUMI_NODE_MIRROR="${SUMI_NODE_MIRROR:-https://nodejs.org/dist}"

# Whether the node on PATH runs Vite 7 (Node ^20.19 or >= 22.12).
_sumi_node_fits() {
    command -v node >/dev/null 2>&1 &&
        node -e 'const [a, b] = process.versions.node.split(".").map(Number);
                 process.exit((a === 20 && b >= 19) || (a === 22 && b >= 12) || a > 22 ? 0 : 1)' 2>/dev/null
}

_sumi_apt() {
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get "$@"
}

sumi_install_deps() {
    local root
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

    # System packages: compiler, WebKitGTK for the app, curl/xz for the downloads below; Xvfb
    # and WebKitWebDriver for the end-to-end test.
    local pkgs="build-essential pkg-config curl ca-certificates xz-utils libwebkit2gtk-4.1-dev"
    [ "${1:-}" = "--e2e" ] && pkgs="$pkgs xvfb xauth webkit2gtk-driver"
    local missing="" p
    for p in $pkgs; do
        [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] ||
            missing="$missing $p"
    done
    if [ -n "$missing" ]; then
        echo "== apt-get install$missing"
        _sumi_apt update -qq
        _sumi_apt install -y -qq --no-install-recommends $missing
    fi

    # Rust, through rustup, into ~/.cargo.
    if ! command -v cargo >/dev/null 2>&1; then
        if [ ! -x "$HOME/.cargo/bin/cargo" ]; then
            echo "== installing Rust with rustup"
            curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
                sh -s -- -y --profile minimal --no-modify-path
        fi
        export PATH="$HOME/.cargo/bin:$PATH"
    fi
    local rust
    rust="$(rustc --version | cut -d' ' -f2)"
    if [ "$(printf '%s\n1.90.0\n' "$rust" | sort -V | head -n1)" != "1.90.0" ]; then
        echo "Rust $rust is older than 1.90, which Sumi needs: run \`rustup update stable\`" >&2
        return 1
    fi

    # Node.js: the system's when it is new enough, else a copy in .tools/.
    if ! _sumi_node_fits; then
        local arch
        case "$(uname -m)" in
            x86_64) arch=x64 ;;
            aarch64) arch=arm64 ;;
            *) echo "no Node.js build for $(uname -m): install Node.js >= 20.19 yourself" >&2; return 1 ;;
        esac
        local name="node-v$SUMI_NODE_VERSION-linux-$arch"
        if [ ! -x "$root/.tools/$name/bin/node" ]; then
            echo "== fetching Node.js $SUMI_NODE_VERSION into .tools/"
            local tmp
            tmp="$(mktemp -d)"
            curl -fsSL "$SUMI_NODE_MIRROR/v$SUMI_NODE_VERSION/SHASUMS256.txt" -o "$tmp/SHASUMS256.txt" &&
                curl -fSL --progress-bar "$SUMI_NODE_MIRROR/v$SUMI_NODE_VERSION/$name.tar.xz" -o "$tmp/$name.tar.xz" &&
                (cd "$tmp" && grep " $name.tar.xz\$" SHASUMS256.txt | sha256sum -c --quiet -) &&
                mkdir -p "$root/.tools" && tar -xJf "$tmp/$name.tar.xz" -C "$root/.tools" ||
                { rm -rf "$tmp"; echo "could not fetch Node.js: install Node.js >= 20.19 yourself" >&2; return 1; }
            rm -rf "$tmp"
        fi
        export PATH="$root/.tools/$name/bin:$PATH"
    fi

    # The UI's packages, when package-lock.json changed since the last install.
    if [ ! "$root/ui/node_modules/.package-lock.json" -nt "$root/ui/package-lock.json" ]; then
        echo "== npm ci (ui/)"
        (cd "$root/ui" && npm ci --no-audit --no-fund)
    fi
}
