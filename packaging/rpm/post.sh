# cutover %post ($1: 1 install, 2 upgrade): the state and runtime directories, the default
# map directory, and the unit (enabled by the system's presets; start it with
# `systemctl enable --now cutover`).
systemd-tmpfiles --create cutover.conf >/dev/null 2>&1 || :
# Where the operator writes the config (the unit starts once it is there).
[ -d /etc/cutover ] || install -d -m 0755 /etc/cutover
if [ -d /etc/haproxy ] && [ ! -e /etc/haproxy/maps ]; then
    install -d -o cutover -g cutover -m 0755 /etc/haproxy/maps
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    if [ "$1" -eq 1 ]; then
        systemctl preset cutover.service >/dev/null 2>&1 || :
    fi
fi
exit 0
