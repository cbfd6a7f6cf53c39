# Sourced by containers/build_images.sh and containers/instance/build.sh: the Debian mirror this
# machine's apt uses, as mmdebstrap takes it (its deb822 or one-line sources file, else Debian's).
apt_sources() {
    local file
    for file in /etc/apt/sources.list.d/debian.sources /etc/apt/sources.list; do
        if [ -s "$file" ] && grep -q '^[^#]*deb' "$file"; then echo "$file"; return; fi
    done
    echo "http://deb.debian.org/debian"
}
