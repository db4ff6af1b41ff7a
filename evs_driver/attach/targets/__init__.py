"""Block targets that export an attached volume's device to initiators: LIO iSCSI, nvmet."""
