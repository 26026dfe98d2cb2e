#!/bin/sh
# keepalived's vrrp_notify_fifo_script for a Tack node: applies the VRRP
# instance's state changes to `tack` in the order keepalived wrote them.
#
#   vrrp_notify_fifo FIFO
#   vrrp_notify_fifo_script "/path/vrrp-notify.sh TACKCTL SOCKET"
#
# keepalived appends the FIFO's name. Each line it writes is
# `INSTANCE "NAME" STATE PRIORITY`: MASTER makes the node the active
# scheduler (`tackctl cluster scheduler active`), BACKUP, FAULT and STOP a
# standby. Why not notify_master/notify_backup: keepalived starts those
# scripts without waiting for them, so a node that is master for a few
# milliseconds (two nodes whose timers ran out together, until one hears
# the other) can have its `standby` applied before its `active`, and stay
# active beside the real master.
set -u
ctl=$1 socket=$2 fifo=$3
while read -r kind _name state _prio; do
  [ "$kind" = INSTANCE ] || continue
  case "$state" in
    MASTER) role=active ;;
    BACKUP | FAULT | STOP) role=standby ;;
    *) continue ;;
  esac
  "$ctl" --socket "$socket" cluster scheduler "$role" >/dev/null ||
    echo "vrrp-notify: tackctl cluster scheduler $role failed" >&2
done <"$fifo"
