# cutover %pre: the system user and group.
getent group cutover >/dev/null || groupadd -r cutover
getent passwd cutover >/dev/null || \
    useradd -r -g cutover -d /var/lib/cutover -M -s /sbin/nologin -c "cutover agent" cutover
exit 0
