"""The console relay: holds every node's serial console (a BMC allows one Serial-over-LAN
session, a VM's socket one reader), keeps its output per boot session in the inventory and
fans it out to the API's WebSocket viewers (docs/console.md)."""
