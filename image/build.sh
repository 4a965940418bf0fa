#!/usr/bin/env bash
# Builds weft's base guest image: the Debian cloud kernel, and an initramfs whose /init is
# weft-guest, with weft-shield for relay instances, busybox for the apps and the virtio
# modules the guest needs.
#
# Usage: image/build.sh [OUTPUT_DIR]        (default: image/out/base)
#
# Run as root on Debian 12: it installs its tools with apt, downloads the kernel package with
# `apt-get download` and unpacks it in a work directory (the host's kernel is not touched).
# Safe to run again: the downloaded package is reused, everything else is rebuilt.
#
# Environment:
#   WEFT_GUEST_BIN   use this weft-guest binary instead of building it (must be static)
#   WEFT_SHIELD_BIN  use this weft-shield binary instead of building it (must be static)
#   WEFT_IMAGE_WORK  work directory (default: image/out/work)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$repo/image/out/base}"
work="${WEFT_IMAGE_WORK:-$repo/image/out/work}"
started=$SECONDS

# The smallest memory_mb the image is meant to boot with. Measured under TCG: with 72 MB the
# kernel runs out of memory unpacking the initramfs and with 64 MB it dies before its first
# console line, while 80 MB booted to the app every time (with 0 to 8 NICs), leaving about
# 10 MB free. 96 is that plus a margin for apps and a growing initramfs.
min_memory_mb=96

# Modules the guest loads, by name; their dependencies are added from modules.dep. tcp_diag
# lets the agent ask for listening sockets without walking the connection table.
wanted_modules=(virtio virtio_ring virtio_pci virtio_net virtio_console tcp_diag)

say() { echo "build.sh: $*"; }
die() { echo "build.sh: error: $*" >&2; exit 1; }

install_tools() {
    local packages=(busybox-static cpio gzip file kmod)
    if [[ $EUID -eq 0 ]]; then
        say "installing tools: ${packages[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${packages[@]}" >/dev/null
    else
        say "not root: skipping apt, checking tools are present"
    fi
    local tool
    for tool in busybox cpio gzip apt-get dpkg-deb depmod cargo; do
        command -v "$tool" >/dev/null || die "$tool is missing"
    done
    if ! file -L /bin/busybox 2>/dev/null | grep -q 'statically linked'; then
        die "/bin/busybox is not the static busybox (install busybox-static)"
    fi
}

# Builds weft-guest and weft-shield as static binaries (glibc, `+crt-static`; no musl target is
# assumed, and neither binary uses NSS) in one cargo invocation, so that they share their
# dependencies, with the `guest` profile: no debug info, optimized for size, stripped.
build_binaries() {
    guest_bin="${WEFT_GUEST_BIN:-}"
    shield_bin="${WEFT_SHIELD_BIN:-}"
    local names=() packages=() name target=x86_64-unknown-linux-gnu
    [[ -n "$guest_bin" ]] || names+=(weft-guest)
    [[ -n "$shield_bin" ]] || names+=(weft-shield)
    for name in "${names[@]}"; do packages+=(-p "$name"); done
    if ((${#names[@]} > 0)); then
        say "building ${names[*]} (static, glibc, profile guest)"
        local compile_started=$SECONDS
        (cd "$repo" && RUSTFLAGS="-C target-feature=+crt-static" \
            cargo build --profile guest --quiet "${packages[@]}" --target "$target")
        say "compiled in $((SECONDS - compile_started)) s"
    fi
    guest_bin="${guest_bin:-$repo/target/$target/guest/weft-guest}"
    shield_bin="${shield_bin:-$repo/target/$target/guest/weft-shield}"
    local bin
    for bin in "$guest_bin" "$shield_bin"; do
        [[ -x "$bin" ]] || die "no binary at $bin"
        file -L "$bin" | grep -Eq 'statically linked|static-pie linked' \
            || die "$bin is not statically linked"
    done
}

fetch_kernel() {
    # The meta package follows the current point release; its dependency names the
    # versioned image package, which holds the vmlinuz and the modules.
    local meta=linux-image-cloud-amd64
    kernel_pkg="$(apt-cache depends "$meta" 2>/dev/null \
        | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }')"
    [[ -n "$kernel_pkg" ]] || die "cannot resolve $meta (run apt-get update as root)"
    kver="${kernel_pkg#linux-image-}"

    mkdir -p "$work/debs"
    local deb
    deb="$(find "$work/debs" -maxdepth 1 -name "${kernel_pkg}_*.deb" | sort | tail -n 1)"
    if [[ -z "$deb" ]]; then
        say "downloading $kernel_pkg"
        # As root apt warns that it cannot drop privileges for the download: keep that quiet,
        # but show everything when the download fails.
        if ! (cd "$work/debs" && apt-get download -qq "$kernel_pkg") 2>"$work/download.err"; then
            cat "$work/download.err" >&2
            die "apt-get download $kernel_pkg failed"
        fi
        deb="$(find "$work/debs" -maxdepth 1 -name "${kernel_pkg}_*.deb" | sort | tail -n 1)"
        [[ -n "$deb" ]] || die "apt-get download $kernel_pkg produced no package"
    else
        say "reusing $(basename "$deb")"
    fi

    kernel_root="$work/kernel"
    rm -rf "$kernel_root"
    dpkg-deb -x "$deb" "$kernel_root"
    [[ -f "$kernel_root/boot/vmlinuz-$kver" ]] || die "no vmlinuz-$kver in $deb"
    # The package leaves modules.dep to the postinst's depmod; run it on the unpacked tree.
    depmod -b "$kernel_root" "$kver"
    [[ -f "$kernel_root/lib/modules/$kver/modules.dep" ]] || die "depmod wrote no modules.dep"
}

# Prints the module paths (relative to lib/modules/$kver) to load, dependencies first.
resolve_modules() {
    local moddir="$kernel_root/lib/modules/$kver"
    awk -v wanted="${wanted_modules[*]}" '
        function modname(path,    n) {
            n = path
            sub(/.*\//, "", n)
            sub(/\.ko(\.[a-z]+)?$/, "", n)
            gsub(/-/, "_", n)
            return n
        }
        # Depth-first: a module is printed after everything it depends on.
        function visit(name,    i, n, list) {
            if (name in done) return
            done[name] = 1
            n = split(deps[name], list, " ")
            for (i = 1; i <= n; i++) visit(modname(list[i]))
            print path[name]
        }
        FILENAME ~ /modules\.builtin$/ { builtin[modname($1)] = 1; next }
        {
            p = $1
            sub(/:$/, "", p)
            name = modname(p)
            path[name] = p
            $1 = ""
            deps[name] = $0
        }
        END {
            n = split(wanted, list, " ")
            for (i = 1; i <= n; i++) {
                if (list[i] in builtin) continue
                if (!(list[i] in path)) { print "missing module " list[i] > "/dev/stderr"; exit 1 }
                visit(list[i])
            }
        }
    ' "$moddir/modules.builtin" "$moddir/modules.dep"
}

make_rootfs() {
    rootfs="$work/rootfs"
    rm -rf "$rootfs"
    mkdir -p "$rootfs"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,run,tmp,root,www,lib/modules}
    chmod 1777 "$rootfs/tmp"

    install -m 0755 "$guest_bin" "$rootfs/init"
    install -m 0755 "$shield_bin" "$rootfs/bin/weft-shield"
    # The guest profile strips its binaries; one given from elsewhere may carry debug info.
    if command -v strip >/dev/null; then
        strip "$rootfs/init" "$rootfs/bin/weft-shield"
    fi
    install -m 0755 /bin/busybox "$rootfs/bin/busybox"
    local applet count=0
    while read -r applet; do
        # /init is weft-guest: busybox's own init must not be reachable by accident.
        case "$applet" in sbin/init | linuxrc | bin/busybox) continue ;; esac
        if [[ ! -e "$rootfs/$applet" ]]; then
            mkdir -p "$rootfs/$(dirname "$applet")"
            ln -s /bin/busybox "$rootfs/$applet"
            count=$((count + 1))
        fi
    done < <(/bin/busybox --list-full)
    say "busybox: $count applet links"

    # The kernel opens /dev/console for /init before anything is mounted.
    if [[ $EUID -eq 0 ]]; then
        mknod -m 0600 "$rootfs/dev/console" c 5 1
    fi

    cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
    cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
    cat >"$rootfs/etc/hosts" <<'EOF'
127.0.0.1 localhost
::1 localhost
EOF
    : >"$rootfs/etc/resolv.conf"
    cat >"$rootfs/www/index.html" <<'EOF'
<!doctype html>
<html>
<head><title>weft</title></head>
<body><h1>Hello from a weft guest</h1><p>Served by busybox httpd inside a microVM.</p></body>
</html>
EOF

    local moddir="lib/modules/$kver" rel modules load="$rootfs/lib/modules/weft-load"
    modules="$(resolve_modules)" || die "cannot resolve the modules ${wanted_modules[*]}"
    : >"$load"
    while read -r rel; do
        [[ "$rel" == *.ko ]] || die "module $rel is compressed; only plain .ko is supported"
        mkdir -p "$rootfs/$moddir/$(dirname "$rel")"
        cp "$kernel_root/$moddir/$rel" "$rootfs/$moddir/$rel"
        echo "/$moddir/$rel" >>"$load"
    done <<<"$modules"
    say "modules: $(xargs -n1 basename <"$load" | tr '\n' ' ')"
}

pack() {
    mkdir -p "$out"
    local tmp="$out/.initrd.tmp"
    # Fixed times and order: the same inputs give the same initrd.
    find "$rootfs" -exec touch -h -d @0 {} +
    (cd "$rootfs" && find . -mindepth 1 -print0 | LC_ALL=C sort -z \
        | cpio --null --create --format=newc --owner=0:0 --reproducible --quiet) \
        | gzip -9 -n >"$tmp"
    mv "$tmp" "$out/initrd"
    cp "$kernel_root/boot/vmlinuz-$kver" "$out/.kernel.tmp"
    mv "$out/.kernel.tmp" "$out/kernel"
    cat >"$out/image.toml.tmp" <<EOF
# weft base image: Debian cloud kernel $kver, weft-guest as /init, busybox.
# The command line needs console=ttyS0 to show the guest's lines on the serial console.
default_args = ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]
# Less memory than this and the kernel dies while unpacking the initramfs.
min_memory_mb = $min_memory_mb
EOF
    mv "$out/image.toml.tmp" "$out/image.toml"
}

install_tools
build_binaries
fetch_kernel
make_rootfs
pack

say "kernel $kver from $kernel_pkg"
say "wrote $out/kernel ($(du -h "$out/kernel" | cut -f1))"
say "wrote $out/initrd ($(du -h "$out/initrd" | cut -f1))"
say "wrote $out/image.toml"
say "done in $((SECONDS - started)) s"
