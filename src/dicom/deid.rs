//! De-identification of a DICOM instance per DICOM PS3.15 Annex E: the Basic
//! Application Level Confidentiality Profile with the Retain Longitudinal Temporal
//! Information Full Dates Option.
//!
//! One table, [`PROFILE`], gives the action for every attribute marrow lets through
//! or treats specially; everything else is removed. So the profile's X (remove) is
//! the default, private attributes (odd groups) are always removed, and the table's
//! K entries are a keep-list of technical attributes that radiographs, CT and MR
//! need to be read and graded. Sequences on the keep-list are cleaned item by item
//! with the same table.
//!
//! - D: replaced by a dummy value; PatientName and PatientID become the study ID
//!   (or a placeholder while the instance waits for its patient).
//! - Z: emptied (Type 2 attributes that must stay present).
//! - X: removed.
//! - K: kept. Dates and times are kept under the Retain Longitudinal Temporal
//!   Information Full Dates Option, where the basic profile would empty or remove them.
//! - U: the UID is replaced by a new one, the same new one for the same original
//!   everywhere ([`UidMapper`]).

use dicom_core::header::Header as _;
use dicom_core::value::{DataSetSequence, PrimitiveValue, Value};
use dicom_core::{DataElement, Length, Tag, VR};
use dicom_object::{FileDicomObject, InMemDicomObject, mem::InMemElement};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What happens to an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Replace with a dummy value.
    D,
    /// Replace with an empty value.
    Z,
    /// Remove.
    X,
    /// Keep (a sequence is kept with its items cleaned).
    K,
    /// Replace the UID with its consistent new UID.
    U,
}

use Action::{D, K, U, X, Z};

/// The action table, sorted by tag: (group, element, keyword, action). Attributes
/// that are not listed, and every private attribute, are removed.
#[rustfmt::skip]
pub const PROFILE: &[(u16, u16, &str, Action)] = &[
    (0x0008, 0x0005, "SpecificCharacterSet", K),
    (0x0008, 0x0008, "ImageType", K),
    (0x0008, 0x0012, "InstanceCreationDate", K),
    (0x0008, 0x0013, "InstanceCreationTime", K),
    (0x0008, 0x0014, "InstanceCreatorUID", U),
    (0x0008, 0x0016, "SOPClassUID", K),
    (0x0008, 0x0018, "SOPInstanceUID", U),
    (0x0008, 0x0020, "StudyDate", K),
    (0x0008, 0x0021, "SeriesDate", K),
    (0x0008, 0x0022, "AcquisitionDate", K),
    (0x0008, 0x0023, "ContentDate", K),
    (0x0008, 0x002A, "AcquisitionDateTime", K),
    (0x0008, 0x0030, "StudyTime", K),
    (0x0008, 0x0031, "SeriesTime", K),
    (0x0008, 0x0032, "AcquisitionTime", K),
    (0x0008, 0x0033, "ContentTime", K),
    (0x0008, 0x0050, "AccessionNumber", Z),
    (0x0008, 0x0060, "Modality", K),
    (0x0008, 0x0064, "ConversionType", K),
    (0x0008, 0x0068, "PresentationIntentType", K),
    (0x0008, 0x0070, "Manufacturer", K),
    (0x0008, 0x0080, "InstitutionName", X),
    (0x0008, 0x0081, "InstitutionAddress", X),
    (0x0008, 0x0082, "InstitutionCodeSequence", X),
    (0x0008, 0x0090, "ReferringPhysicianName", Z),
    (0x0008, 0x0092, "ReferringPhysicianAddress", X),
    (0x0008, 0x0094, "ReferringPhysicianTelephoneNumbers", X),
    (0x0008, 0x0096, "ReferringPhysicianIdentificationSequence", X),
    (0x0008, 0x0100, "CodeValue", K),
    (0x0008, 0x0102, "CodingSchemeDesignator", K),
    (0x0008, 0x0103, "CodingSchemeVersion", K),
    (0x0008, 0x0104, "CodeMeaning", K),
    (0x0008, 0x0105, "MappingResource", K),
    (0x0008, 0x010F, "ContextIdentifier", K),
    (0x0008, 0x0117, "ContextUID", K),
    (0x0008, 0x0119, "LongCodeValue", K),
    (0x0008, 0x0120, "URNCodeValue", K),
    (0x0008, 0x0201, "TimezoneOffsetFromUTC", K),
    (0x0008, 0x1010, "StationName", X),
    (0x0008, 0x1030, "StudyDescription", X),
    (0x0008, 0x103E, "SeriesDescription", X),
    (0x0008, 0x1040, "InstitutionalDepartmentName", X),
    (0x0008, 0x1048, "PhysiciansOfRecord", X),
    (0x0008, 0x1049, "PhysiciansOfRecordIdentificationSequence", X),
    (0x0008, 0x1050, "PerformingPhysicianName", X),
    (0x0008, 0x1052, "PerformingPhysicianIdentificationSequence", X),
    (0x0008, 0x1060, "NameOfPhysiciansReadingStudy", X),
    (0x0008, 0x1062, "PhysiciansReadingStudyIdentificationSequence", X),
    (0x0008, 0x1070, "OperatorsName", X),
    (0x0008, 0x1072, "OperatorIdentificationSequence", X),
    (0x0008, 0x1080, "AdmittingDiagnosesDescription", X),
    (0x0008, 0x1084, "AdmittingDiagnosesCodeSequence", X),
    (0x0008, 0x1090, "ManufacturerModelName", K),
    (0x0008, 0x1110, "ReferencedStudySequence", X),
    (0x0008, 0x1111, "ReferencedPerformedProcedureStepSequence", X),
    (0x0008, 0x1120, "ReferencedPatientSequence", X),
    (0x0008, 0x1140, "ReferencedImageSequence", X),
    (0x0008, 0x1150, "ReferencedSOPClassUID", K),
    (0x0008, 0x1155, "ReferencedSOPInstanceUID", U),
    (0x0008, 0x2111, "DerivationDescription", X),
    (0x0008, 0x2112, "SourceImageSequence", X),
    (0x0008, 0x2218, "AnatomicRegionSequence", K),
    (0x0008, 0x2220, "AnatomicRegionModifierSequence", K),
    (0x0008, 0x2228, "PrimaryAnatomicStructureSequence", K),
    (0x0008, 0x3010, "IrradiationEventUID", U),
    (0x0008, 0x9123, "CreatorVersionUID", U),
    (0x0010, 0x0010, "PatientName", D),
    (0x0010, 0x0020, "PatientID", D),
    (0x0010, 0x0021, "IssuerOfPatientID", X),
    (0x0010, 0x0030, "PatientBirthDate", Z),
    (0x0010, 0x0032, "PatientBirthTime", X),
    (0x0010, 0x0040, "PatientSex", Z),
    (0x0010, 0x0050, "PatientInsurancePlanCodeSequence", X),
    (0x0010, 0x1000, "OtherPatientIDs", X),
    (0x0010, 0x1001, "OtherPatientNames", X),
    (0x0010, 0x1002, "OtherPatientIDsSequence", X),
    (0x0010, 0x1005, "PatientBirthName", X),
    (0x0010, 0x1010, "PatientAge", X),
    (0x0010, 0x1020, "PatientSize", X),
    (0x0010, 0x1030, "PatientWeight", X),
    (0x0010, 0x1040, "PatientAddress", X),
    (0x0010, 0x1060, "PatientMotherBirthName", X),
    (0x0010, 0x1090, "MedicalRecordLocator", X),
    (0x0010, 0x2154, "PatientTelephoneNumbers", X),
    (0x0010, 0x2160, "EthnicGroup", X),
    (0x0010, 0x2180, "Occupation", X),
    (0x0010, 0x21B0, "AdditionalPatientHistory", X),
    (0x0010, 0x4000, "PatientComments", X),
    (0x0018, 0x0010, "ContrastBolusAgent", Z),
    (0x0018, 0x0015, "BodyPartExamined", K),
    (0x0018, 0x0020, "ScanningSequence", K),
    (0x0018, 0x0021, "SequenceVariant", K),
    (0x0018, 0x0022, "ScanOptions", K),
    (0x0018, 0x0023, "MRAcquisitionType", K),
    (0x0018, 0x0050, "SliceThickness", K),
    (0x0018, 0x0060, "KVP", K),
    (0x0018, 0x0080, "RepetitionTime", K),
    (0x0018, 0x0081, "EchoTime", K),
    (0x0018, 0x0082, "InversionTime", K),
    (0x0018, 0x0083, "NumberOfAverages", K),
    (0x0018, 0x0084, "ImagingFrequency", K),
    (0x0018, 0x0085, "ImagedNucleus", K),
    (0x0018, 0x0086, "EchoNumbers", K),
    (0x0018, 0x0087, "MagneticFieldStrength", K),
    (0x0018, 0x0088, "SpacingBetweenSlices", K),
    (0x0018, 0x0091, "EchoTrainLength", K),
    (0x0018, 0x0093, "PercentSampling", K),
    (0x0018, 0x0094, "PercentPhaseFieldOfView", K),
    (0x0018, 0x0095, "PixelBandwidth", K),
    (0x0018, 0x1000, "DeviceSerialNumber", X),
    (0x0018, 0x1002, "DeviceUID", U),
    (0x0018, 0x1004, "PlateID", X),
    (0x0018, 0x1005, "GeneratorID", X),
    (0x0018, 0x1007, "CassetteID", X),
    (0x0018, 0x1008, "GantryID", X),
    (0x0018, 0x1030, "ProtocolName", X),
    (0x0018, 0x1100, "ReconstructionDiameter", K),
    (0x0018, 0x1110, "DistanceSourceToDetector", K),
    (0x0018, 0x1111, "DistanceSourceToPatient", K),
    (0x0018, 0x1114, "EstimatedRadiographicMagnificationFactor", K),
    (0x0018, 0x1120, "GantryDetectorTilt", K),
    (0x0018, 0x1130, "TableHeight", K),
    (0x0018, 0x1140, "RotationDirection", K),
    (0x0018, 0x1150, "ExposureTime", K),
    (0x0018, 0x1151, "XRayTubeCurrent", K),
    (0x0018, 0x1152, "Exposure", K),
    (0x0018, 0x1153, "ExposureInuAs", K),
    (0x0018, 0x1160, "FilterType", K),
    (0x0018, 0x1164, "ImagerPixelSpacing", K),
    (0x0018, 0x1166, "Grid", K),
    (0x0018, 0x1190, "FocalSpots", K),
    (0x0018, 0x1210, "ConvolutionKernel", K),
    (0x0018, 0x1250, "ReceiveCoilName", K),
    (0x0018, 0x1251, "TransmitCoilName", K),
    (0x0018, 0x1310, "AcquisitionMatrix", K),
    (0x0018, 0x1312, "InPlanePhaseEncodingDirection", K),
    (0x0018, 0x1314, "FlipAngle", K),
    (0x0018, 0x1400, "AcquisitionDeviceProcessingDescription", X),
    (0x0018, 0x1405, "RelativeXRayExposure", K),
    (0x0018, 0x1411, "ExposureIndex", K),
    (0x0018, 0x1412, "TargetExposureIndex", K),
    (0x0018, 0x1413, "DeviationIndex", K),
    (0x0018, 0x4000, "AcquisitionComments", X),
    (0x0018, 0x5100, "PatientPosition", K),
    (0x0018, 0x5101, "ViewPosition", K),
    (0x0018, 0x7004, "DetectorType", K),
    (0x0018, 0x700A, "DetectorID", X),
    (0x0018, 0x9004, "ContentQualification", K),
    (0x0018, 0x9074, "FrameAcquisitionDateTime", K),
    (0x0018, 0x9151, "FrameReferenceDateTime", K),
    (0x0018, 0x9220, "FrameAcquisitionDuration", K),
    (0x0018, 0x9226, "MRImageFrameTypeSequence", K),
    (0x0018, 0x9329, "CTImageFrameTypeSequence", K),
    (0x0018, 0x9424, "AcquisitionProtocolDescription", X),
    (0x0020, 0x000D, "StudyInstanceUID", U),
    (0x0020, 0x000E, "SeriesInstanceUID", U),
    (0x0020, 0x0010, "StudyID", Z),
    (0x0020, 0x0011, "SeriesNumber", K),
    (0x0020, 0x0012, "AcquisitionNumber", K),
    (0x0020, 0x0013, "InstanceNumber", K),
    (0x0020, 0x0020, "PatientOrientation", K),
    (0x0020, 0x0032, "ImagePositionPatient", K),
    (0x0020, 0x0037, "ImageOrientationPatient", K),
    (0x0020, 0x0052, "FrameOfReferenceUID", U),
    (0x0020, 0x0060, "Laterality", K),
    (0x0020, 0x0062, "ImageLaterality", K),
    (0x0020, 0x0200, "SynchronizationFrameOfReferenceUID", U),
    (0x0020, 0x1040, "PositionReferenceIndicator", K),
    (0x0020, 0x1041, "SliceLocation", K),
    (0x0020, 0x4000, "ImageComments", X),
    (0x0020, 0x9111, "FrameContentSequence", K),
    (0x0020, 0x9113, "PlanePositionSequence", K),
    (0x0020, 0x9116, "PlaneOrientationSequence", K),
    (0x0020, 0x9157, "DimensionIndexValues", K),
    (0x0020, 0x9158, "FrameComments", X),
    (0x0020, 0x9161, "ConcatenationUID", U),
    (0x0020, 0x9164, "DimensionOrganizationUID", U),
    (0x0020, 0x9165, "DimensionIndexPointer", K),
    (0x0020, 0x9167, "FunctionalGroupPointer", K),
    (0x0020, 0x9221, "DimensionOrganizationSequence", K),
    (0x0020, 0x9222, "DimensionIndexSequence", K),
    (0x0028, 0x0002, "SamplesPerPixel", K),
    (0x0028, 0x0004, "PhotometricInterpretation", K),
    (0x0028, 0x0006, "PlanarConfiguration", K),
    (0x0028, 0x0008, "NumberOfFrames", K),
    (0x0028, 0x0009, "FrameIncrementPointer", K),
    (0x0028, 0x0010, "Rows", K),
    (0x0028, 0x0011, "Columns", K),
    (0x0028, 0x0030, "PixelSpacing", K),
    (0x0028, 0x0034, "PixelAspectRatio", K),
    (0x0028, 0x0100, "BitsAllocated", K),
    (0x0028, 0x0101, "BitsStored", K),
    (0x0028, 0x0102, "HighBit", K),
    (0x0028, 0x0103, "PixelRepresentation", K),
    (0x0028, 0x0106, "SmallestImagePixelValue", K),
    (0x0028, 0x0107, "LargestImagePixelValue", K),
    (0x0028, 0x0120, "PixelPaddingValue", K),
    (0x0028, 0x0121, "PixelPaddingRangeLimit", K),
    (0x0028, 0x0300, "QualityControlImage", K),
    (0x0028, 0x0301, "BurnedInAnnotation", K),
    (0x0028, 0x0302, "RecognizableVisualFeatures", K),
    (0x0028, 0x0A02, "PixelSpacingCalibrationType", K),
    (0x0028, 0x1040, "PixelIntensityRelationship", K),
    (0x0028, 0x1041, "PixelIntensityRelationshipSign", K),
    (0x0028, 0x1050, "WindowCenter", K),
    (0x0028, 0x1051, "WindowWidth", K),
    (0x0028, 0x1052, "RescaleIntercept", K),
    (0x0028, 0x1053, "RescaleSlope", K),
    (0x0028, 0x1054, "RescaleType", K),
    (0x0028, 0x1055, "WindowCenterWidthExplanation", K),
    (0x0028, 0x1056, "VOILUTFunction", K),
    (0x0028, 0x1101, "RedPaletteColorLookupTableDescriptor", K),
    (0x0028, 0x1102, "GreenPaletteColorLookupTableDescriptor", K),
    (0x0028, 0x1103, "BluePaletteColorLookupTableDescriptor", K),
    (0x0028, 0x1201, "RedPaletteColorLookupTableData", K),
    (0x0028, 0x1202, "GreenPaletteColorLookupTableData", K),
    (0x0028, 0x1203, "BluePaletteColorLookupTableData", K),
    (0x0028, 0x2110, "LossyImageCompression", K),
    (0x0028, 0x2112, "LossyImageCompressionRatio", K),
    (0x0028, 0x2114, "LossyImageCompressionMethod", K),
    (0x0028, 0x3000, "ModalityLUTSequence", K),
    (0x0028, 0x3002, "LUTDescriptor", K),
    (0x0028, 0x3003, "LUTExplanation", K),
    (0x0028, 0x3004, "ModalityLUTType", K),
    (0x0028, 0x3006, "LUTData", K),
    (0x0028, 0x3010, "VOILUTSequence", K),
    (0x0028, 0x9110, "PixelMeasuresSequence", K),
    (0x0028, 0x9132, "FrameVOILUTSequence", K),
    (0x0028, 0x9145, "PixelValueTransformationSequence", K),
    (0x0032, 0x1032, "RequestingPhysician", X),
    (0x0032, 0x1033, "RequestingService", X),
    (0x0032, 0x1060, "RequestedProcedureDescription", X),
    (0x0032, 0x1070, "RequestedContrastAgent", X),
    (0x0032, 0x4000, "StudyComments", X),
    (0x0038, 0x0010, "AdmissionID", X),
    (0x0038, 0x0300, "CurrentPatientLocation", X),
    (0x0038, 0x0400, "PatientInstitutionResidence", X),
    (0x0038, 0x0500, "PatientState", X),
    (0x0040, 0x0006, "ScheduledPerformingPhysicianName", X),
    (0x0040, 0x0007, "ScheduledProcedureStepDescription", X),
    (0x0040, 0x0009, "ScheduledProcedureStepID", X),
    (0x0040, 0x0241, "PerformedStationAETitle", X),
    (0x0040, 0x0242, "PerformedStationName", X),
    (0x0040, 0x0243, "PerformedLocation", X),
    (0x0040, 0x0244, "PerformedProcedureStepStartDate", K),
    (0x0040, 0x0245, "PerformedProcedureStepStartTime", K),
    (0x0040, 0x0250, "PerformedProcedureStepEndDate", K),
    (0x0040, 0x0251, "PerformedProcedureStepEndTime", K),
    (0x0040, 0x0253, "PerformedProcedureStepID", X),
    (0x0040, 0x0254, "PerformedProcedureStepDescription", X),
    (0x0040, 0x0275, "RequestAttributesSequence", X),
    (0x0040, 0x0280, "CommentsOnThePerformedProcedureStep", X),
    (0x0040, 0x1001, "RequestedProcedureID", X),
    (0x0040, 0x1400, "RequestedProcedureComments", X),
    (0x0040, 0x2016, "PlacerOrderNumberImagingServiceRequest", Z),
    (0x0040, 0x2017, "FillerOrderNumberImagingServiceRequest", Z),
    (0x0040, 0x2400, "ImagingServiceRequestComments", X),
    (0x0040, 0xA123, "PersonName", X),
    (0x0040, 0xA124, "UID", U),
    (0x0040, 0xA730, "ContentSequence", X),
    (0x0054, 0x0220, "ViewCodeSequence", K),
    (0x0054, 0x0222, "ViewModifierCodeSequence", K),
    (0x0088, 0x0140, "StorageMediaFileSetUID", U),
    (0x0088, 0x0200, "IconImageSequence", X),
    (0x0400, 0x0561, "OriginalAttributesSequence", X),
    (0x2050, 0x0020, "PresentationLUTShape", K),
    (0x5200, 0x9229, "SharedFunctionalGroupsSequence", K),
    (0x5200, 0x9230, "PerFrameFunctionalGroupsSequence", K),
    (0x7FE0, 0x0008, "FloatPixelData", K),
    (0x7FE0, 0x0009, "DoubleFloatPixelData", K),
    (0x7FE0, 0x0010, "PixelData", K),
];

/// The action for an attribute: private ones and those not in [`PROFILE`] are removed.
pub fn action_for(tag: Tag) -> Action {
    if tag.group() % 2 == 1 || tag.element() == 0 {
        return X; // private attributes, and group lengths (recomputed on write)
    }
    PROFILE
        .binary_search_by_key(&(tag.group(), tag.element()), |(g, e, _, _)| (*g, *e))
        .map(|i| PROFILE[i].3)
        .unwrap_or(X)
}

/// (0012,0063) De-identification Method: the profile and the option, each value
/// within LO's 64 characters.
pub const METHOD: [&str; 2] = [
    "Basic Application Level Confidentiality Profile",
    "Retain Longitudinal Temporal Information Full Dates Option",
];

/// (0012,0064) De-identification Method Code Sequence: (code, meaning), scheme DCM.
pub const METHOD_CODES: [(&str, &str); 2] = [
    ("113100", "Basic Application Confidentiality Profile"),
    (
        "113106",
        "Retain Longitudinal Temporal Information Full Dates Option",
    ),
];

/// PatientID and PatientName of an instance whose patient is not imported yet; the
/// store copy is rewritten with the study ID when it is linked.
pub const QUARANTINE_LABEL: &str = "QUARANTINE";

/// HKDF label of the UID-mapping secret, derived from the study key.
/// Changing it would give every instance new UIDs on the next import.
pub const UID_LABEL: &[u8] = b"marrow/dicom-uid/v1";

/// Maps original UIDs to new ones: `2.25.<integer>`, where the integer is a version-8
/// UUID made of an HMAC-SHA256 of the original UID under a secret derived from the
/// study key. The same original always maps to the same new UID in one study, and
/// the new UID cannot be traced back without the key.
#[derive(Clone)]
pub struct UidMapper(Hmac<Sha256>);

impl UidMapper {
    /// The mapper of a study: its secret is derived from the study key under [`UID_LABEL`].
    pub fn new(study: &crate::db::Study) -> UidMapper {
        UidMapper::from_secret(&study.derived_secret(UID_LABEL))
    }

    pub fn from_secret(secret: &[u8]) -> UidMapper {
        UidMapper(Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length"))
    }

    /// The new UID of an original one (padding stripped first).
    pub fn map(&self, uid: &str) -> String {
        let uid = uid.trim_matches(|c: char| c == '\0' || c.is_whitespace());
        let mut mac = self.0.clone();
        mac.update(uid.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut b = [0u8; 16];
        b.copy_from_slice(&digest[..16]);
        b[6] = (b[6] & 0x0f) | 0x80; // UUID version 8 (custom)
        b[8] = (b[8] & 0x3f) | 0x80; // RFC 9562 variant
        format!("2.25.{}", u128::from_be_bytes(b))
    }
}

/// A string attribute's first value, trimmed; `None` when absent or empty.
pub fn text(obj: &InMemDicomObject, tag: Tag) -> Option<String> {
    let e = obj.get(tag)?;
    let s = e.to_str().ok()?;
    let s = s
        .split('\\')
        .next()
        .unwrap_or("")
        .trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!s.is_empty()).then(|| s.to_string())
}

fn map_uids(e: InMemElement, uids: &UidMapper) -> InMemElement {
    let tag = e.tag();
    let values: Vec<String> = match e.to_multi_str() {
        Ok(v) => v
            .iter()
            .map(|s| s.trim_matches(|c: char| c == '\0' || c.is_whitespace()))
            .filter(|s| !s.is_empty())
            .map(|s| uids.map(s))
            .collect(),
        Err(_) => Vec::new(),
    };
    if values.is_empty() {
        return DataElement::empty(tag, VR::UI);
    }
    DataElement::new(tag, VR::UI, PrimitiveValue::Strs(values.into()))
}

fn dummy(tag: Tag, vr: VR) -> InMemElement {
    let v = match vr {
        VR::DA => "19000101",
        VR::TM => "000000",
        VR::DT => "19000101000000",
        VR::AE | VR::CS | VR::LO | VR::LT | VR::PN | VR::SH | VR::ST | VR::UC | VR::UT => {
            "ANONYMIZED"
        }
        VR::DS | VR::IS => "0",
        _ => return DataElement::empty(tag, vr),
    };
    DataElement::new(tag, vr, PrimitiveValue::from(v))
}

/// Applies the profile to one data set (recursively into the kept sequences).
pub fn clean(obj: InMemDicomObject, uids: &UidMapper) -> InMemDicomObject {
    let mut kept: Vec<InMemElement> = Vec::new();
    for e in obj {
        let tag = e.tag();
        match action_for(tag) {
            X => {}
            Z => kept.push(DataElement::empty(tag, e.vr())),
            D => kept.push(dummy(tag, e.vr())),
            U => kept.push(map_uids(e, uids)),
            K => {
                let vr = e.vr();
                match e.into_value() {
                    Value::Sequence(seq) => {
                        let items: Vec<InMemDicomObject> = seq
                            .into_items()
                            .into_iter()
                            .map(|item| clean(item, uids))
                            .collect();
                        kept.push(DataElement::new(
                            tag,
                            VR::SQ,
                            DataSetSequence::new(items, Length::UNDEFINED),
                        ));
                    }
                    v => kept.push(DataElement::new(tag, vr, v)),
                }
            }
        }
    }
    InMemDicomObject::from_element_iter(kept)
}

/// Sets PatientName and PatientID to the study's label for the patient.
pub fn set_patient(obj: &mut InMemDicomObject, label: &str) {
    obj.put(DataElement::new(
        Tag(0x0010, 0x0010),
        VR::PN,
        PrimitiveValue::from(label),
    ));
    obj.put(DataElement::new(
        Tag(0x0010, 0x0020),
        VR::LO,
        PrimitiveValue::from(label),
    ));
}

fn method_code_item(code: &str, meaning: &str) -> InMemDicomObject {
    InMemDicomObject::from_element_iter([
        DataElement::new(Tag(0x0008, 0x0100), VR::SH, PrimitiveValue::from(code)),
        DataElement::new(Tag(0x0008, 0x0102), VR::SH, PrimitiveValue::from("DCM")),
        DataElement::new(Tag(0x0008, 0x0104), VR::LO, PrimitiveValue::from(meaning)),
    ])
}

/// De-identifies a whole file: the data set through [`clean`], PatientName and
/// PatientID set to `patient_label`, the de-identification attributes added, and
/// the file meta group rebuilt around the new SOP Instance UID (no AE titles, no
/// private information).
pub fn deidentify(
    file: FileDicomObject<InMemDicomObject>,
    uids: &UidMapper,
    patient_label: &str,
) -> FileDicomObject<InMemDicomObject> {
    let old_meta = file.meta().clone();
    let mut obj = clean(file.into_inner(), uids);
    set_patient(&mut obj, patient_label);
    obj.put(DataElement::new(
        Tag(0x0012, 0x0062),
        VR::CS,
        PrimitiveValue::from("YES"),
    ));
    obj.put(DataElement::new(
        Tag(0x0012, 0x0063),
        VR::LO,
        PrimitiveValue::Strs(METHOD.iter().map(|s| s.to_string()).collect()),
    ));
    obj.put(DataElement::new(
        Tag(0x0012, 0x0064),
        VR::SQ,
        DataSetSequence::new(
            METHOD_CODES
                .iter()
                .map(|(c, m)| method_code_item(c, m))
                .collect::<Vec<_>>(),
            Length::UNDEFINED,
        ),
    ));
    // (0028,0303) Longitudinal Temporal Information Modified: dates kept as they were.
    obj.put(DataElement::new(
        Tag(0x0028, 0x0303),
        VR::CS,
        PrimitiveValue::from("UNMODIFIED"),
    ));
    let sop_uid = text(&obj, Tag(0x0008, 0x0018))
        .unwrap_or_else(|| uids.map(&old_meta.media_storage_sop_instance_uid));
    let sop_class = text(&obj, Tag(0x0008, 0x0016))
        .unwrap_or_else(|| old_meta.media_storage_sop_class_uid.clone());
    pixel_words_as_bytes(&mut obj, old_meta.transfer_syntax());
    let mut meta = old_meta;
    meta.media_storage_sop_instance_uid = sop_uid;
    meta.media_storage_sop_class_uid = sop_class;
    meta.implementation_class_uid = dicom_object::IMPLEMENTATION_CLASS_UID.to_string();
    meta.implementation_version_name = Some(dicom_object::IMPLEMENTATION_VERSION_NAME.to_string());
    meta.source_application_entity_title = None;
    meta.sending_application_entity_title = None;
    meta.receiving_application_entity_title = None;
    meta.private_information_creator_uid = None;
    meta.private_information = None;
    meta.update_information_group_length();
    obj.with_exact_meta(meta)
}

/// Native 16-bit Pixel Data held as words is written word by word by the encoder, a
/// third of an import's time for a large radiograph; in a little-endian transfer
/// syntax the same bytes can be written in one go. The file's content is unchanged.
fn pixel_words_as_bytes(obj: &mut InMemDicomObject, transfer_syntax: &str) {
    const EXPLICIT_BIG_ENDIAN: &str = "1.2.840.10008.1.2.2";
    let ts = transfer_syntax.trim_end_matches(['\0', ' ']);
    if ts == EXPLICIT_BIG_ENDIAN {
        return;
    }
    let tag = Tag(0x7FE0, 0x0010);
    let Some(e) = obj.get(tag) else {
        return;
    };
    let (vr, words) = match e.value() {
        dicom_core::DicomValue::Primitive(PrimitiveValue::U16(w)) => (e.vr(), w),
        _ => return,
    };
    let mut bytes = Vec::with_capacity(words.len() * 2);
    for w in words.iter() {
        bytes.extend_from_slice(&w.to_le_bytes());
    }
    obj.put(DataElement::new(tag, vr, PrimitiveValue::U8(bytes.into())));
}

/// Why an image needs a look for burned-in text before it is used, if it does:
/// BurnedInAnnotation YES, or a kind of image known to carry text in its pixels.
pub fn burned_in_reason(obj: &InMemDicomObject) -> Option<String> {
    if text(obj, Tag(0x0028, 0x0301)).is_some_and(|v| v.eq_ignore_ascii_case("YES")) {
        return Some("BurnedInAnnotation is YES".into());
    }
    let class = text(obj, Tag(0x0008, 0x0016)).unwrap_or_default();
    let in_family = |root: &str| class == root || class.starts_with(&format!("{root}."));
    if in_family("1.2.840.10008.5.1.4.1.1.7") {
        return Some("secondary capture (screenshots often carry text)".into());
    }
    if in_family("1.2.840.10008.5.1.4.1.1.6") || in_family("1.2.840.10008.5.1.4.1.1.3") {
        return Some("ultrasound (often carries burned-in text)".into());
    }
    let modality = text(obj, Tag(0x0008, 0x0060)).unwrap_or_default();
    match modality.to_ascii_uppercase().as_str() {
        "OT" | "SC" | "US" | "XC" | "DOC" | "ES" | "GM" => Some(format!(
            "modality {modality} often carries burned-in text or faces"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapper() -> UidMapper {
        UidMapper::from_secret(b"test secret")
    }

    #[test]
    fn the_table_is_sorted_without_repeats_and_lists_no_private_tags() {
        for w in PROFILE.windows(2) {
            assert!(
                (w[0].0, w[0].1) < (w[1].0, w[1].1),
                "{} must come before {}",
                w[0].2,
                w[1].2
            );
        }
        assert!(PROFILE.iter().all(|(g, _, _, _)| g % 2 == 0));
    }

    #[test]
    fn identifying_attributes_get_the_profile_action() {
        let cases = [
            (Tag(0x0010, 0x0010), D), // PatientName
            (Tag(0x0010, 0x0020), D), // PatientID
            (Tag(0x0010, 0x0030), Z), // PatientBirthDate
            (Tag(0x0008, 0x0050), Z), // AccessionNumber
            (Tag(0x0008, 0x0090), Z), // ReferringPhysicianName
            (Tag(0x0008, 0x0080), X), // InstitutionName
            (Tag(0x0008, 0x1050), X), // PerformingPhysicianName
            (Tag(0x0008, 0x1070), X), // OperatorsName
            (Tag(0x0010, 0x1040), X), // PatientAddress
            (Tag(0x0010, 0x4000), X), // PatientComments
            (Tag(0x0020, 0x4000), X), // ImageComments
            (Tag(0x0020, 0x000D), U), // StudyInstanceUID
            (Tag(0x0008, 0x0018), U), // SOPInstanceUID
            (Tag(0x0008, 0x0020), K), // StudyDate: kept (temporal option)
            (Tag(0x0028, 0x0030), K), // PixelSpacing
            (Tag(0x7FE0, 0x0010), K), // PixelData
        ];
        for (tag, action) in cases {
            assert_eq!(action_for(tag), action, "{tag}");
        }
        // private attributes, group lengths and anything unlisted are removed
        assert_eq!(action_for(Tag(0x0009, 0x1001)), X);
        assert_eq!(action_for(Tag(0x0029, 0x0010)), X);
        assert_eq!(action_for(Tag(0x0008, 0x0000)), X);
        assert_eq!(action_for(Tag(0x0010, 0x2297)), X); // ResponsiblePerson
    }

    #[test]
    fn uid_mapping_is_consistent_keyed_and_valid() {
        let m = mapper();
        let a = m.map("1.2.826.0.1.3680043.2.1125.1");
        assert_eq!(a, m.map("1.2.826.0.1.3680043.2.1125.1\0"));
        assert_eq!(a, m.map(" 1.2.826.0.1.3680043.2.1125.1 "));
        assert_ne!(a, m.map("1.2.826.0.1.3680043.2.1125.2"));
        assert_ne!(
            a,
            UidMapper::from_secret(b"other").map("1.2.826.0.1.3680043.2.1125.1")
        );
        assert!(a.starts_with("2.25."));
        assert!(a.len() <= 64, "{a}");
        let n = &a[5..];
        assert!(n.chars().all(|c| c.is_ascii_digit()), "{a}");
        assert!(!n.starts_with('0'), "{a}");
        // a version-8 UUID in integer form
        let v: u128 = n.parse().unwrap();
        assert_eq!((v >> 76) & 0xf, 8);
        assert_eq!((v >> 62) & 0x3, 2);
    }

    #[test]
    fn clean_removes_keeps_empties_and_maps_and_recurses() {
        let m = mapper();
        let item = InMemDicomObject::from_element_iter([
            DataElement::new(Tag(0x0008, 0x0100), VR::SH, PrimitiveValue::from("R-10202")),
            DataElement::new(
                Tag(0x0008, 0x0080),
                VR::LO,
                PrimitiveValue::from("Secret Hospital"),
            ),
            DataElement::new(Tag(0x0008, 0x1155), VR::UI, PrimitiveValue::from("1.2.3.4")),
        ]);
        let obj = InMemDicomObject::from_element_iter([
            DataElement::new(Tag(0x0008, 0x0050), VR::SH, PrimitiveValue::from("ACC123")),
            DataElement::new(Tag(0x0008, 0x0060), VR::CS, PrimitiveValue::from("DX")),
            DataElement::new(
                Tag(0x0008, 0x0080),
                VR::LO,
                PrimitiveValue::from("Secret Hospital"),
            ),
            DataElement::new(Tag(0x0009, 0x0010), VR::LO, PrimitiveValue::from("ACME")),
            DataElement::new(
                Tag(0x0009, 0x1001),
                VR::LO,
                PrimitiveValue::from("Zhang San"),
            ),
            DataElement::new(
                Tag(0x0010, 0x0030),
                VR::DA,
                PrimitiveValue::from("19500101"),
            ),
            DataElement::new(Tag(0x0020, 0x000D), VR::UI, PrimitiveValue::from("1.2.3")),
            DataElement::new(
                Tag(0x0054, 0x0220),
                VR::SQ,
                DataSetSequence::new(vec![item], Length::UNDEFINED),
            ),
        ]);
        let out = clean(obj, &m);
        assert_eq!(text(&out, Tag(0x0008, 0x0060)).as_deref(), Some("DX"));
        assert!(
            out.get(Tag(0x0008, 0x0050)).is_some(),
            "Z keeps the attribute"
        );
        assert_eq!(text(&out, Tag(0x0008, 0x0050)), None);
        assert_eq!(text(&out, Tag(0x0010, 0x0030)), None);
        assert!(out.get(Tag(0x0008, 0x0080)).is_none());
        assert!(out.get(Tag(0x0009, 0x0010)).is_none());
        assert!(out.get(Tag(0x0009, 0x1001)).is_none());
        assert_eq!(text(&out, Tag(0x0020, 0x000D)), Some(m.map("1.2.3")));
        let seq = out.get(Tag(0x0054, 0x0220)).unwrap();
        let items = seq.items().unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(
            text(&items[0], Tag(0x0008, 0x0100)).as_deref(),
            Some("R-10202")
        );
        assert!(items[0].get(Tag(0x0008, 0x0080)).is_none());
        assert_eq!(text(&items[0], Tag(0x0008, 0x1155)), Some(m.map("1.2.3.4")));
    }

    #[test]
    fn burned_in_text_is_flagged() {
        let with = |tag: Tag, vr: VR, v: &str| {
            InMemDicomObject::from_element_iter([DataElement::new(
                tag,
                vr,
                PrimitiveValue::from(v),
            )])
        };
        assert!(burned_in_reason(&with(Tag(0x0028, 0x0301), VR::CS, "YES")).is_some());
        assert!(burned_in_reason(&with(Tag(0x0028, 0x0301), VR::CS, "NO")).is_none());
        assert!(burned_in_reason(&with(Tag(0x0008, 0x0060), VR::CS, "US")).is_some());
        assert!(burned_in_reason(&with(Tag(0x0008, 0x0060), VR::CS, "DX")).is_none());
        assert!(
            burned_in_reason(&with(
                Tag(0x0008, 0x0016),
                VR::UI,
                "1.2.840.10008.5.1.4.1.1.7"
            ))
            .is_some()
        );
    }
}
