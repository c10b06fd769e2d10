// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";

/// @notice Test build of the EnergyOracle: accepts EIP-712 energy attestations signed by an
/// authorised signer, once per strictly rising nonce of each user.
/// @dev `verify` never reverts on a bad attestation. It returns the zero address and changes
/// nothing, so a caller must read the return value (or the event) to learn the outcome.
contract EnergyOracle is EIP712, Ownable {
    struct EnergyAttestation {
        uint256 jobId;
        address user;
        int256 energy;
        uint256 degeneracy;
        uint256 epochId;
        uint8 role;
        uint256 nonce;
        uint256 deadline;
        uint256 uPre;
        uint256 uPost;
        uint256 value;
    }

    bytes32 public constant ENERGY_ATTESTATION_TYPEHASH =
        keccak256(
            "EnergyAttestation(uint256 jobId,address user,int256 energy,uint256 degeneracy,uint256 epochId,uint8 role,uint256 nonce,uint256 deadline,uint256 uPre,uint256 uPost,uint256 value)"
        );

    /// @notice Highest accepted nonce of each user, 0 before the first acceptance.
    mapping(address => uint256) public nonces;

    address[] private _signers;
    /// Position of each signer in `_signers` plus one, so 0 means "not a signer".
    mapping(address => uint256) private _signerPositions;

    /// Test-only event: the tests count acceptances from it.
    event AttestationAccepted(
        address indexed user,
        uint256 indexed jobId,
        uint256 indexed nonce,
        EnergyAttestation att,
        address signer
    );

    error InvalidSigner(address signer);

    constructor() EIP712("EnergyOracle", "1") Ownable(msg.sender) {}

    /// @notice Accepts `att` and returns its signer, or returns the zero address without any
    /// state change when the deadline has passed, the nonce is not above `nonces[att.user]`
    /// or the signature does not recover to an authorised signer.
    function verify(
        EnergyAttestation calldata att,
        bytes calldata sig
    ) external returns (address signer) {
        if (att.deadline < block.timestamp) return address(0);
        if (att.nonce <= nonces[att.user]) return address(0);

        // tryRecover instead of recover, so that a malformed signature also returns zero.
        (address recovered, ECDSA.RecoverError recoverError, ) = ECDSA.tryRecoverCalldata(
            _hashAttestation(att),
            sig
        );
        if (recoverError != ECDSA.RecoverError.NoError || !isSigner(recovered)) return address(0);

        nonces[att.user] = att.nonce;
        emit AttestationAccepted(att.user, att.jobId, att.nonce, att, recovered);
        return recovered;
    }

    /// @notice Returns the EIP-712 digest that the signer of `att` signs.
    function hashAttestation(EnergyAttestation calldata att) external view returns (bytes32) {
        return _hashAttestation(att);
    }

    /// @notice Authorises (`allowed` true) or deauthorises `signer`. Only the owner may call it.
    function setSigner(address signer, bool allowed) external onlyOwner {
        if (signer == address(0)) revert InvalidSigner(signer);
        if (allowed) {
            _addSigner(signer);
        } else {
            _removeSigner(signer);
        }
    }

    function isSigner(address account) public view returns (bool) {
        return _signerPositions[account] != 0;
    }

    function signerCount() external view returns (uint256) {
        return _signers.length;
    }

    function getSigners() external view returns (address[] memory) {
        return _signers;
    }

    function _hashAttestation(EnergyAttestation calldata att) private view returns (bytes32) {
        // Every field is a static type, so abi.encode lays the struct out as eleven 32-byte
        // words, which is exactly EIP-712's encodeData. Encoding the struct whole also avoids
        // a stack-too-deep error from listing eleven calldata fields.
        return _hashTypedDataV4(keccak256(abi.encode(ENERGY_ATTESTATION_TYPEHASH, att)));
    }

    function _addSigner(address signer) private {
        if (isSigner(signer)) return;
        _signers.push(signer);
        _signerPositions[signer] = _signers.length;
    }

    /// Moves the last signer into the removed signer's slot, so the list stays dense.
    function _removeSigner(address signer) private {
        uint256 position = _signerPositions[signer];
        if (position == 0) return;

        address last = _signers[_signers.length - 1];
        _signers[position - 1] = last;
        _signerPositions[last] = position;
        _signers.pop();
        delete _signerPositions[signer];
    }
}
